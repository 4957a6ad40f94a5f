"""The data model. Models hold data and the constraints that keep it consistent; the rules
that change it live in ``annotations.services`` and the reads in ``annotations.selectors``."""

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower, Trim

from annotations.study_tasks import FORWARD, TASK_CHOICES

_TOKEN_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


def _public_token() -> str:
    """16 characters from an unambiguous alphabet: URL- and command-line-safe (no leading '-')."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


#: What participants see of a study that has no public title (and of pages with no study).
PUBLIC_TITLE_DEFAULT = "A short study about an AI model's answers"


class Dataset(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    modalities = models.JSONField(default=list, help_text="Payload keys besides id and label, e.g. ['image', 'text'].")
    answer_types = models.JSONField(
        default=dict, blank=True, help_text="Answer type -> its valid answers, as the items use them ({}: none)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="dataset_unique_name_per_owner")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Item(models.Model):
    """One input. ``payload`` maps each modality to its value: text inline, files as paths
    relative to MEDIA_ROOT with content-hash names (so no file name carries a label)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=200)
    payload = models.JSONField()
    gold_label = models.CharField(max_length=200)
    line_number = models.PositiveIntegerField()
    choices = models.JSONField(
        default=list, blank=True, help_text="The answers valid for this item ([]: not declared, every label)."
    )
    answer_type = models.CharField(max_length=100, blank=True, help_text="The answer type naming the choices, if any.")
    group = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The protected attribute, for the model report's bias section.",
    )
    evidence = models.JSONField(
        null=True, blank=True, help_text="The evidence region per modality (workers/engine/dataset.py), or null."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "external_id"], name="item_unique_id_per_dataset"),
        ]
        ordering = ["dataset", "line_number"]

    def __str__(self) -> str:
        return self.external_id


class RegisteredModel(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="registered_models")
    name = models.CharField(max_length=100)
    adapter_path = models.CharField(max_length=300, help_text="package.module:Factory")
    adapter_options = models.JSONField(
        default=dict, blank=True, help_text="Keyword options for the factory: Factory(**adapter_options)."
    )
    labels = models.JSONField(default=list)
    modalities = models.JSONField(default=list)
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the adapter offers beyond the protocol, recorded at registration: "
        "{'features': bool}. Empty for models registered before it was recorded.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="model_unique_name_per_owner")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.adapter_path})"


class Prediction(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="predictions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="predictions")
    label = models.CharField(max_length=200)
    probabilities = models.JSONField(help_text="One probability per label, in the model's label order.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "item"], name="prediction_unique_per_model_item")]

    @property
    def is_correct(self) -> bool:
        return self.label == self.item.gold_label


class Explanation(models.Model):
    """One attribution (or interaction) of one item for one target class."""

    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="explanations")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="explanations")
    method = models.CharField(max_length=50)
    target_label = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices)
    arrays_file = models.CharField(max_length=300, blank=True, help_text="npz under MEDIA_ROOT")
    image_view = models.CharField(max_length=300, blank=True, help_text="rendered PNG under MEDIA_ROOT")
    token_view = models.JSONField(default=list, blank=True, help_text="token highlight spans")
    summary = models.JSONField(default=dict, blank=True, help_text="modality share, delta, group scores")
    # Also 'table', 'series' and 'audio' (views of those modalities); help_text kept, so no migration.
    extra_views = models.JSONField(
        default=dict,
        blank=True,
        help_text="Further rendered views, view name -> PNG under MEDIA_ROOT: "
        "'share' (modality share bars), 'top_pairs' (interaction pairs).",
    )
    metrics = models.JSONField(
        default=dict, blank=True, help_text="automatic metrics: deletion/insertion AUC, infidelity, sensitivity"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model", "item", "method", "target_label"], name="explanation_unique_per_target"
            ),
        ]


class ItemAttention(models.Model):
    """The attention of one model on one item (``workers.engine.attention.AttentionRecord``:
    per-head unit attention, block shares, rollout and each target's relevance), stored once
    per (model, item) as a compressed ``.npz`` under MEDIA_ROOT; ``targets`` are the labels
    whose relevance it holds."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="attention")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="attention")
    arrays_file = models.CharField(max_length=300, help_text="npz under MEDIA_ROOT (AttentionRecord.to_bytes)")
    targets = models.JSONField(default=list, blank=True, help_text="Labels whose relevance the file holds.")
    cross_modal = models.BooleanField(default=True, help_text="False for two-tower models (CLIP).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "item"], name="item_attention_unique")]


class DecisionFeatures(models.Model):
    """MultiViz stages 3 and 4 of one model over one dataset: every item's decision-level
    features, the sparse linear head fitted over them (with its held-out fidelity), and the
    items that activate each feature most with their heatmaps. Keyed by model, not study:
    every study of the model on the dataset reuses it. ``method`` is the attribution method
    the example heatmaps are drawn with."""

    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="decision_features")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="decision_features")
    method = models.CharField(max_length=50)
    status = models.CharField(max_length=10, choices=Status.choices)
    arrays_file = models.CharField(
        max_length=300, blank=True, help_text="npz under MEDIA_ROOT: item_ids, activations, logits, sparse weights"
    )
    summary = models.JSONField(
        default=dict, blank=True, help_text="fidelity, sparsity, and per feature its top-activating item IDs"
    )
    example_views = models.JSONField(
        default=dict,
        blank=True,
        help_text="feature index -> PNGs (under MEDIA_ROOT) of its top-activating items with the feature's heatmap",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "dataset", "method"], name="decision_features_unique"),
        ]


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PRECOMPUTING = "precomputing"
        READY = "ready"
        LIVE = "live"
        CLOSED = "closed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="studies")
    collaborators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="shared_studies")
    name = models.CharField(max_length=200, help_text="Internal: researchers only.")
    public_title = models.CharField(
        max_length=200, blank=True, help_text="What participants see; the internal name may state the hypothesis."
    )
    public_id = models.CharField(max_length=32, unique=True, default=_public_token)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="studies")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="studies")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    task = models.CharField(
        max_length=20,
        choices=TASK_CHOICES,
        default=FORWARD,
        help_text="What participants do with an item (annotations/study_tasks.py).",
    )
    seed = models.BigIntegerField(default=0)
    items_per_participant = models.PositiveIntegerField(default=10)
    raters_per_item = models.PositiveIntegerField(default=3)
    n_candidates = models.PositiveIntegerField(default=4, help_text="0 shows every label.")
    n_distractors = models.PositiveIntegerField(default=0, help_text="Random labels added to the model's top-k.")
    explanation_method = models.CharField(max_length=50, default="integrated_gradients")
    interaction_method = models.CharField(max_length=50, default="second_order")
    explanation_display = models.CharField(
        max_length=30,
        default="all_candidates",
        choices=[
            ("all_candidates", "One explanation per candidate, in random order"),
            ("predicted_unlabelled", "The predicted class's explanation, with no class name"),
        ],
    )
    lease_minutes = models.PositiveIntegerField(default=60, help_text="Time limit: leases expire after it.")
    learning_items = models.PositiveIntegerField(default=0, help_text="Items shown with the model's answer first.")
    pretest = models.BooleanField(default=False, help_text="Test items once without explanations first.")
    attention_checks = models.PositiveIntegerField(default=0, help_text="Attention-check items per participant.")
    min_rt_ms = models.PositiveIntegerField(default=0, help_text="Answers faster than this are flagged.")
    exclusion_rules = models.JSONField(default=dict, blank=True, help_text="Pre-registered, fixed at launch.")
    sequential_monitoring = models.JSONField(
        default=dict,
        blank=True,
        help_text="Pre-registered interim looks with alpha spending (annotations.analysis.sequential); fixed at launch.",
    )
    survey = models.BooleanField(default=True)
    screened_out_code = models.CharField(max_length=32, default=_completion_code)
    export_raw_platform_ids = models.BooleanField(default=False, help_text="Export platform IDs unhashed.")
    consent_text = models.TextField(blank=True)
    instructions = models.TextField(blank=True)
    completion_code = models.CharField(max_length=32, default=_completion_code)
    partial_code = models.CharField(
        max_length=32,
        default=_completion_code,
        help_text="Paid to those whose time ran out after some answers (a separate Prolific code; "
        "on MTurk the HIT is submitted with outcome=partial).",
    )
    design = models.JSONField(default=dict, blank=True, help_text="Further design options.")
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]
        constraints = [
            # "UX Draft OK " and "ux draft ok" are one name to a person: unique ignoring case
            # and surrounding spaces (services/studies.py turns a clash into a field error)
            models.UniqueConstraint("owner", Lower(Trim("name")), name="study_unique_name_per_owner_ci"),
            models.CheckConstraint(
                condition=Q(items_per_participant__gte=1), name="study_items_per_participant_positive"
            ),
            models.CheckConstraint(condition=Q(raters_per_item__gte=1), name="study_raters_per_item_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.name = (self.name or "").strip()  # a name is stored as a person reads it
        super().save(*args, **kwargs)

    @property
    def title_for_participants(self) -> str:
        return self.public_title or PUBLIC_TITLE_DEFAULT


class StudyItem(models.Model):
    """An item in a study's pool, with the stratum it was sampled from."""

    class Stratum(models.TextChoices):
        MODEL_RIGHT = "model_right"
        MODEL_WRONG = "model_wrong"

    class Role(models.TextChoices):
        TEST = "test"
        LEARNING = "learning"
        ATTENTION = "attention"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_items")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="study_items")
    stratum = models.CharField(max_length=20, choices=Stratum.choices, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.TEST)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "item"], name="study_item_unique")]


class Condition(models.Model):
    """A between-subjects arm: the explanation views its participants see."""

    class View(models.TextChoices):
        HEATMAP = "heatmap", "Image heatmap"
        TOKENS = "tokens", "Token highlights"
        SHARE = "share", "Modality share bars"
        INTERACTION = "interaction", "Cross-modal interaction matrix"
        TOP_PAIRS = "top_pairs", "Top interacting patch-word pairs"
        TABLE = "table", "Tabular feature bars"
        SERIES = "series", "Time series with attribution over time"
        AUDIO = "audio", "Audio waveform with attribution over time"
        FEATURES = "features", "What activates the deciding features (MultiViz representations)"
        PREDICTION = "prediction", "Sparse feature weights behind each answer (MultiViz prediction)"
        ATTENTION = "attention", "Attention over the picture and the words (transformer adapters)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    name = models.CharField(max_length=100)
    views = models.JSONField(default=list, blank=True, help_text="Empty for the no-explanation baseline.")
    is_baseline = models.BooleanField(default=False)
    method = models.CharField(
        max_length=50,
        blank=True,
        help_text="Rating and preference studies: this arm's attribution method (empty: the study's).",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "name"], name="condition_unique_name"),
            models.UniqueConstraint(fields=["study"], condition=Q(is_baseline=True), name="condition_one_baseline"),
        ]

    def __str__(self) -> str:
        return self.name


class PrecomputeJob(models.Model):
    """One precompute of a study: predictions, then (with an interaction-strength filter) the
    2x2 modality interactions, then the pool's explanations. Each stage is split into
    :class:`PrecomputeChunk` rows that any number of workers take in parallel; progress is
    derived from them (``annotations.selectors.precompute.job_progress``)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Runner(models.TextChoices):
        WORKERS = "workers", "Celery workers"
        INLINE = "inline", "In this process (command line, embedded mode)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="precompute_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    runner = models.CharField(max_length=10, choices=Runner.choices, default=Runner.WORKERS)
    queue = models.CharField(max_length=100, blank=True, help_text="Celery queue of this job's chunk tasks.")
    batch_size = models.PositiveIntegerField(default=64, help_text="(Item, target) rows per chunk.")
    stage = models.CharField(max_length=20, blank=True, help_text="The stage planned last.")
    plan = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per part (predictions, strength, attribution, interaction): items in "
        "total and items that needed no work.",
    )
    dispatch_error = models.TextField(
        blank=True, help_text="Why the last hand-over to the task queue failed; empty once it succeeds."
    )
    error = models.TextField(blank=True, help_text="Traceback of the failure, shown to the researcher.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open job per study: a second click reuses it instead of racing it.
            models.UniqueConstraint(
                fields=["study"],
                condition=Q(status__in=["queued", "running"]),
                name="precompute_job_one_open_per_study",
            ),
        ]


class LeasedWork(models.Model):
    """The lease fields of a piece of background work that one worker at a time computes
    (precompute chunks, model reports, the next job): the rules that use them live in
    ``annotations.services.leases`` (docs/DESIGN.md, "Background jobs"). A concrete model adds
    ``status`` and ``error``, and names its waiting status ``WAITING``."""

    #: The status of a row a worker holds (every leased model spells it so).
    RUNNING = "running"
    #: The status of a row that waits for a worker (set by each concrete model).
    WAITING: str

    attempts = models.PositiveIntegerField(default=0)
    claim = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class PrecomputeChunk(LeasedWork):
    """A bounded unit of precompute work: one engine batch of items for one stage.

    A worker claims it (pending -> running, with a fresh ``claim`` token), beats
    ``heartbeat_at`` while it computes, and finishes it (done or failed). A chunk whose
    heartbeat stopped (the worker was killed) is claimed again, by the watchdog or by a
    redelivered message. Results are stored per (model, item, method, target) under a unique
    constraint, so a chunk computed twice still stores every row once."""

    class Stage(models.TextChoices):
        PREDICTIONS = "predictions"
        STRENGTH = "strength", "2x2 modality interaction (strength filter)"
        ATTRIBUTION = "attribution"
        INTERACTION = "interaction"
        FEATURES = "features", "Decision-level features and their sparse head (dataset)"
        MULTIVIZ = "multiviz", "Feature and prediction views"
        ATTENTION = "attention", "Attention rollout and relevance (transformer adapters)"
        COUNTERFACTUAL = "counterfactual", "Counterfactual edits and the model's answers on them"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        SPLIT = "split", "Split into smaller chunks after hitting the time limit"

    job = models.ForeignKey(PrecomputeJob, on_delete=models.CASCADE, related_name="chunks")
    stage = models.CharField(max_length=20, choices=Stage.choices)
    method = models.CharField(max_length=50, blank=True)
    index = models.PositiveIntegerField()
    item_ids = models.JSONField(default=list)
    targets = models.JSONField(default=dict, blank=True, help_text="Item id -> the labels to explain.")
    WAITING = Status.PENDING

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failed_rows = models.PositiveIntegerField(default=0, help_text="Explanations stored as failed.")
    error = models.TextField(blank=True)

    @property
    def rows(self) -> int:
        """Rows this chunk stores: one per (item, target) when it explains, else one per item."""
        return sum(len(labels) for labels in self.targets.values()) if self.targets else len(self.item_ids)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="precompute_chunk_unique_index")]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]


class Participant(models.Model):
    class Platform(models.TextChoices):
        LINK = "link"
        INVITE = "invite"
        PROLIFIC = "prolific"
        MTURK = "mturk"
        PREVIEW = "preview"

    class Phase(models.TextChoices):
        CONSENT = "consent"
        INSTRUCTIONS = "instructions"
        LEARNING = "learning"
        PRETEST = "pretest"
        TEST = "test"
        SURVEY = "survey"
        DONE = "done"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="participants")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    platform_id = models.CharField(max_length=200, blank=True)
    platform_data = models.JSONField(default=dict, blank=True)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.CONSENT)
    screened_out = models.BooleanField(default=False)
    timed_out = models.BooleanField(
        default=False,
        help_text="The time limit ran out before any answer: no completion code, told to return the task.",
    )
    partial = models.BooleanField(
        default=False,
        help_text="The time limit ran out after some answers: told so, paid through the partial-completion code.",
    )
    helpfulness = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Post-survey, 1-5.")
    comment = models.TextField(blank=True)
    excluded = models.BooleanField(default=False, help_text="Meets a pre-registered exclusion rule; rows are kept.")
    exclusion_reasons = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "platform", "platform_id"],
                condition=~Q(platform_id=""),
                name="participant_unique_platform_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.public_id}"


class StudyEntryCounter(models.Model):
    """How many participants have entered a study: the position in the arm randomisation
    sequence. A row of its own, bumped in one short statement, so that entries never lock
    the study row."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, primary_key=True, related_name="+")
    entries = models.PositiveBigIntegerField(default=0)


class InviteToken(models.Model):
    """A single-use link for one participant."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True, default=_public_token)
    participant = models.OneToOneField(Participant, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)


class Assignment(models.Model):
    """A lease of one item to one participant. It holds one of the item's rater slots."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ANSWERED = "answered"
        EXPIRED = "expired"

    class Phase(models.TextChoices):
        PRETEST = "pretest"
        LEARNING = "learning"
        TEST = "test"

    class Kind(models.TextChoices):
        ITEM = "item"
        ATTENTION = "attention"

    class Check(models.TextChoices):
        INSTRUCTED = "instructed", "Instructed response"
        GOLD = "gold", "Easy gold item"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="assignments")
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.TEST)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ITEM)
    expected_answer = models.CharField(max_length=200, blank=True, help_text="Attention checks only.")
    check_type = models.CharField(max_length=12, choices=Check.choices, blank=True, help_text="Attention checks only.")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="assignments")
    # Preference: the two arms whose explanations the item compares (``condition`` is the
    # participant's arm, as in every task).
    left_condition = models.ForeignKey(Condition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    right_condition = models.ForeignKey(Condition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    candidate_order = models.JSONField(default=list, help_text="Labels in the order shown.")
    lease_expires_at = models.DateTimeField()
    served_at = models.DateTimeField(null=True, blank=True, help_text="First time the item page was served.")
    media = models.JSONField(
        default=dict,
        blank=True,
        help_text="What this assignment's media URLs serve, fixed when first served: URL key "
        "(e.g. 'v/heatmap/0') -> file under MEDIA_ROOT, and 'study' -> the "
        "study's public ID. Never sent to the browser.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["participant", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "item", "phase"], name="assignment_item_once_per_participant_phase"
            ),
            models.UniqueConstraint(fields=["participant", "position"], name="assignment_unique_position"),
        ]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"]),
            # Every participant page asks for its current item: this keeps that a lookup of a
            # few rows in position order whatever the planner's statistics say. Without it, a
            # live study outgrowing its last ANALYZE made it a bitmap scan of every active
            # lease (1.9 ms of Postgres CPU a page at 17,000 leases; docs/BENCHMARKS.md).
            models.Index(
                fields=["participant", "position"],
                condition=Q(status="active"),
                name="assignment_active_in_order",
            ),
        ]


class Slot(models.Model):
    """One of the ``raters_per_item`` places an item has in an arm. An assignment takes a
    free slot under ``SELECT … FOR UPDATE SKIP LOCKED``; since slots are fixed rows, no
    race can give an item more raters than it has slots."""

    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="slots")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="slots")
    index = models.PositiveIntegerField()
    sort_key = models.BigIntegerField(help_text="Seeded random order within a round of slots.")
    assignment = models.OneToOneField(Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="slot")
    # Preference studies: the arm whose explanation is on the right (``condition``: the left).
    right_condition = models.ForeignKey(Condition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["condition", "item", "index"], name="slot_unique")]
        indexes = [models.Index(fields=["condition", "index", "sort_key"])]


class Response(models.Model):
    """A participant's answer to one assignment. One per assignment: a double submit stores one."""

    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="response")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="responses")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="responses")
    condition = models.ForeignKey(Condition, on_delete=models.PROTECT, related_name="responses")
    phase = models.CharField(max_length=10, choices=Assignment.Phase.choices, default=Assignment.Phase.TEST)
    is_attention_check = models.BooleanField(default=False)
    attention_passed = models.BooleanField(null=True, blank=True)
    too_fast = models.BooleanField(default=False, help_text="Answered faster than the study's minimum time.")
    guess = models.CharField(max_length=200)  # forward simulation's answer; empty in verification
    verdict = models.BooleanField(
        null=True, blank=True, help_text="Verification: the participant says the model's answer is right."
    )
    rationale = models.JSONField(
        null=True,
        blank=True,
        help_text="Rationale: the units marked as evidence for the gold answer, per modality (the evidence format).",
    )
    # Rating and preference studies (annotations/services/judging.py): empty in other tasks.
    left_condition = models.ForeignKey(
        Condition,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Preference: shown left.",
    )
    right_condition = models.ForeignKey(
        Condition,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Preference: shown right.",
    )
    preferred = models.CharField(
        max_length=5, blank=True, help_text="Preference: the side that helps more, 'left' or 'right'."
    )
    rating_helpfulness = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Rating: 1-5.")
    rating_trust = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Rating: 1-5.")
    rating_understanding = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Rating: 1-5.")
    confidence = models.PositiveSmallIntegerField()
    rt_ms = models.PositiveIntegerField(help_text="Server-measured: first serve of the item to submission.")
    # Browser-measured timing (static/mmeval/timing.js, validated by services/client_timing.py):
    # empty when the browser sent none (no JavaScript) or the value was rejected (see the flags).
    client_rt_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Browser-measured: stimulus fully displayed to submission (performance.now)."
    )
    client_display_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Browser-measured: navigation start to the stimulus fully displayed."
    )
    blur_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Times the participant left the page (tab hidden or window blurred)."
    )
    hidden_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Total time the tab was hidden.")
    client_timing_flags = models.CharField(
        max_length=200, blank=True, help_text="Problems found in the browser's timing, joined by ';'; empty if none."
    )
    candidate_order = models.JSONField(default=list)
    model_prediction = models.CharField(max_length=200)
    gold_label = models.CharField(max_length=200)
    # Counterfactual task: the edit shown and the model's answer on it (what the guess simulates).
    counterfactual_edit = models.ForeignKey(
        "CounterfactualEdit", null=True, blank=True, on_delete=models.PROTECT, related_name="responses"
    )
    edit_prediction = models.CharField(
        max_length=200, blank=True, help_text="Counterfactual: the model's answer on the edited input."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=1) & Q(confidence__lte=5), name="response_confidence_1_to_5"
            ),
        ]
        # The dashboard's progress counts the scored answers per arm on every load: an
        # index-only count, without a join to the participants (selectors.studies.study_progress).
        indexes = [
            models.Index(
                fields=["condition"],
                condition=Q(phase="test", is_attention_check=False),
                name="response_scored_by_condition",
            ),
        ]


class CounterfactualEdit(models.Model):
    """One edited input of a study item (``workers/engine/counterfactual.py``) and the model's
    answer on it, computed by the ``counterfactual`` precompute stage. ``shown`` marks the one
    edit per item the study's participants see (seeded); the model's answer here is never
    served to a participant."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="counterfactual_edits")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="counterfactual_edits")
    kind = models.CharField(max_length=30, help_text="modality_baseline, top_k_removed, word_swap or adapter.")
    name = models.CharField(max_length=200, help_text="Unique among the item's edits, e.g. word_swap:red->blue.")
    description = models.CharField(max_length=500, help_text="What changed, as the participant reads it.")
    display = models.JSONField(default=dict, blank=True, help_text="What the page draws of the change.")
    picture_view = models.CharField(max_length=300, blank=True, help_text="The edited picture, PNG under MEDIA_ROOT.")
    model_label = models.CharField(max_length=200)
    probabilities = models.JSONField(default=list)
    shown = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "item", "name"], name="counterfactual_edit_unique_name"),
            models.UniqueConstraint(
                fields=["study", "item"], condition=Q(shown=True), name="counterfactual_edit_one_shown"
            ),
        ]


class DashboardSnapshot(LeasedWork):
    """The latest dashboard of a study (``services.analysis.study_dashboard_compute``), computed
    by a background task on a debounce while the study fills (``services.dashboard``); the
    dashboard request only reads it. ``status``: ``idle`` (nothing asked since the last
    result), ``queued`` (a refresh was asked and its task published, after the debounce),
    ``running`` (a worker holds it, leased as every background job) or ``failed``. ``rerun``:
    data moved while it ran, so it is queued again when it finishes."""

    WAITING = "queued"

    class Status(models.TextChoices):
        IDLE = "idle"
        QUEUED = "queued"
        RUNNING = "running"
        FAILED = "failed"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="dashboard_snapshot")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    rerun = models.BooleanField(default=False)
    requested_at = models.DateTimeField(null=True, blank=True, help_text="When a refresh was last asked for.")
    result = models.BinaryField(null=True, blank=True, help_text="The pickled dashboard data (our own worker's).")
    data_version = models.CharField(max_length=64, blank=True, help_text="Hash of the data version it was computed at.")
    n_responses = models.PositiveIntegerField(default=0, help_text="Responses when the computation started.")
    computed_at = models.DateTimeField(null=True, blank=True, help_text="When the computation started.")
    computations = models.PositiveIntegerField(default=0, help_text="Results stored so far.")
    error = models.TextField(blank=True)


class ModelReport(LeasedWork):
    """The model report of one registered model on one dataset (issue 12; definitions in
    docs/MODEL_REPORT.md): computed by a worker (``workers.report_pipeline``) stage by stage.
    ``state`` keeps each finished stage's output, so a worker that dies (or a task that reaches
    its time limit) is followed by one that goes on from the last finished stage. A worker
    claims the report with a fresh ``claim`` token and beats ``heartbeat_at`` while it computes,
    as precompute chunks do."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    WAITING = Status.QUEUED

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_reports")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="reports")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="model_reports")
    train_dataset = models.ForeignKey(
        Dataset,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Training items for the learning curves (default: the adapter's).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    runner = models.CharField(max_length=10, choices=PrecomputeJob.Runner.choices, default=PrecomputeJob.Runner.WORKERS)
    queue = models.CharField(max_length=100, blank=True, help_text="Celery queue of the report's task.")
    options = models.JSONField(default=dict, blank=True, help_text="workers.engine.report.options.ReportOptions.")
    slices = models.JSONField(default=dict, blank=True, help_text="The slices document: {fields, slices}.")
    state = models.JSONField(default=dict, blank=True, help_text="Output of every finished stage (resumable).")
    progress = models.JSONField(default=dict, blank=True, help_text="Stage, done and total of the running stage.")
    result = models.JSONField(null=True, blank=True, help_text="The finished report.")
    error = models.TextField(blank=True)
    dispatch_error = models.TextField(blank=True, help_text="Why the last hand-over to the task queue failed.")
    attempts = models.PositiveIntegerField(default=0, help_text="Claims since a stage last finished.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open report per researcher, model and dataset: a second click reuses it.
            models.UniqueConstraint(
                fields=["owner", "model", "dataset"],
                condition=Q(status__in=["queued", "running"]),
                name="model_report_one_open",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"report {self.pk}: {self.model.name} on {self.dataset.name}"
