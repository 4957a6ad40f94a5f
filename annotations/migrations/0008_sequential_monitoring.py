from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0007_adapter_options'),
    ]

    operations = [
        migrations.AddField(
            model_name='study',
            name='sequential_monitoring',
            field=models.JSONField(blank=True, default=dict, help_text='Pre-registered interim looks with alpha spending (annotations.analysis.sequential); fixed at launch.'),
        ),
    ]
