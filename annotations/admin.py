from django.contrib import admin

from annotations import models


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "modalities", "created_at")


@admin.register(models.Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ("external_id", "dataset", "gold_label", "line_number")
    list_filter = ("dataset",)
    search_fields = ("external_id",)


@admin.register(models.RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "adapter_path", "created_at")


@admin.register(models.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("item", "model", "label")
    list_filter = ("model",)


@admin.register(models.Explanation)
class ExplanationAdmin(admin.ModelAdmin):
    list_display = ("item", "model", "method", "target_label", "status", "updated_at")
    list_filter = ("status", "method", "model")


class ConditionInline(admin.TabularInline):
    model = models.Condition
    extra = 0


@admin.register(models.Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "status", "dataset", "model", "created_at")
    list_filter = ("status",)
    inlines = [ConditionInline]
    filter_horizontal = ("collaborators",)
    # Fixed once participants can arrive: the slots and the pre-registration depend on them.
    locked_when_launched = (
        "dataset",
        "model",
        "seed",
        "items_per_participant",
        "raters_per_item",
        "n_candidates",
        "explanation_method",
        "interaction_method",
        "explanation_display",
        "exclusion_rules",
        "min_rt_ms",
        "attention_checks",
        "learning_items",
        "pretest",
        "design",
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status in (models.Study.Status.LIVE, models.Study.Status.CLOSED):
            return self.locked_when_launched
        return ()


@admin.register(models.StudyItem)
class StudyItemAdmin(admin.ModelAdmin):
    list_display = ("study", "item", "stratum")
    list_filter = ("study", "stratum")


@admin.register(models.Condition)
class ConditionAdmin(admin.ModelAdmin):
    list_display = ("name", "study", "views", "is_baseline")


@admin.register(models.PrecomputeJob)
class PrecomputeJobAdmin(admin.ModelAdmin):
    list_display = ("study", "status", "runner", "stage", "created_at", "finished_at")


@admin.register(models.PrecomputeChunk)
class PrecomputeChunkAdmin(admin.ModelAdmin):
    list_display = ("job", "index", "stage", "method", "status", "attempts", "worker", "heartbeat_at")
    list_filter = ("status", "stage")


@admin.register(models.Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ("public_id", "study", "condition", "platform", "phase", "started_at", "finished_at")
    list_filter = ("study", "platform", "phase")


@admin.register(models.InviteToken)
class InviteTokenAdmin(admin.ModelAdmin):
    list_display = ("token", "study", "participant", "used_at")


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("participant", "item", "condition", "position", "status", "lease_expires_at")
    list_filter = ("status",)


@admin.register(models.Slot)
class SlotAdmin(admin.ModelAdmin):
    list_display = ("condition", "item", "index", "assignment")


@admin.register(models.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = (
        "participant",
        "item",
        "condition",
        "guess",
        "model_prediction",
        "confidence",
        "rt_ms",
        "created_at",
    )
    list_filter = ("condition",)
