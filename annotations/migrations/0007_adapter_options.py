from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0006_model_report'),
    ]

    operations = [
        migrations.AddField(
            model_name='registeredmodel',
            name='adapter_options',
            field=models.JSONField(blank=True, default=dict, help_text='Keyword options for the factory: Factory(**adapter_options).'),
        ),
    ]
