from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0015_bias_annotations"),
    ]

    operations = [
        migrations.AddField(
            model_name="response",
            name="client_rt_ms",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Browser-measured: stimulus fully displayed to submission (performance.now).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="response",
            name="client_display_ms",
            field=models.PositiveIntegerField(
                blank=True, help_text="Browser-measured: navigation start to the stimulus fully displayed.", null=True
            ),
        ),
        migrations.AddField(
            model_name="response",
            name="blur_count",
            field=models.PositiveIntegerField(
                blank=True, help_text="Times the participant left the page (tab hidden or window blurred).", null=True
            ),
        ),
        migrations.AddField(
            model_name="response",
            name="hidden_ms",
            field=models.PositiveIntegerField(blank=True, help_text="Total time the tab was hidden.", null=True),
        ),
        migrations.AddField(
            model_name="response",
            name="client_timing_flags",
            field=models.CharField(
                blank=True,
                help_text="Problems found in the browser's timing, joined by ';'; empty if none.",
                max_length=200,
            ),
        ),
    ]
