"""Build the whole demo: data, model, a study (``--study ig``: baseline, IG and interaction
arms; ``--study multiviz``: MultiViz's cumulative stages), precompute, launch, then serve."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from annotations.models import Dataset, PrecomputeJob, RegisteredModel, Study
from annotations.services.datasets import dataset_import
from annotations.services.precompute import precompute_job_create
from annotations.services.registry import registered_model_create
from annotations.services.spec import study_spec_parse
from annotations.services.spec_templates import multiviz_spec
from annotations.services.studies import ConditionSpec, study_create, study_create_from_spec, study_launch
from workers.engine.demo.data import generate_dataset
from workers.engine.demo.model import load_or_train
from workers.engine.demo.tabular.data import generate_dataset as generate_plants
from workers.engine.demo.tabular.model import load_or_train as load_plant_model
from workers.pipeline import precompute_run

DEMO_ADAPTER = "workers.engine.demo.adapter:DemoAdapter"
DEMO_USER, DEMO_PASSWORD = "alice", "mmeval-demo"
DEMO_STUDY = "Demo: do IG explanations help people simulate the model?"
# The second demo (--demo tabular): house plants, a table of measurements and a note.
TABULAR_ADAPTER = "workers.engine.demo.tabular.adapter:PlantAdapter"
TABULAR_STUDY = "Demo: do feature bars reveal the balcony shortcut?"
TABULAR_ARMS = {"baseline": [], "ig-bars+tokens": ["table", "tokens"], "share": ["share"]}
TABULAR_INSTRUCTIONS = (
    "An AI model read each house plant's measurements and a note by its owner, and answered what "
    "state the plant is in. Your task is not to judge the plant yourself, but to predict what the "
    "model answered — the model is sometimes wrong."
)
# What the participant pages call the plants demo's inputs (else "the table" and "the question").
TABULAR_MODALITY_NAMES = {"tabular": "the measurements", "text": "the owner's note"}
MULTIVIZ_STUDY = "Demo: MultiViz stages (U, U+C, U+C+R, U+C+R+P)"


def _demo_design() -> dict:
    """What both demos' studies share: 40 test items, 10 per participant, 3 raters per item and
    arm, 4 candidates, 4 practice items, 1 attention check, a survey, pre-registered exclusions."""
    return dict(
        n_items=40,
        items_per_participant=10,
        raters_per_item=3,
        n_candidates=4,
        seed=7,
        learning_items=4,
        attention_checks=1,
        min_rt_ms=800,
        survey=True,
        exclusion_rules={"max_attention_failures": 0, "max_fast_share": 0.5},
    )


class Command(BaseCommand):
    help = "Create the demo study end to end and serve it (embedded SQLite + in-process tasks by default)."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="build everything, then exit")
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument(
            "--items",
            type=int,
            default=None,
            help="items in the generated dataset (default 320 shapes, where the model errs on about "
            "1 in 13; 200 plants, where it errs on the balcony plants that are not scorched)",
        )
        parser.add_argument(
            "--demo",
            choices=("shapes", "tabular"),
            default="shapes",
            help="shapes: image + text (default); tabular: a table of measurements + text",
        )
        parser.add_argument(
            "--study",
            choices=("ig", "multiviz"),
            default="ig",
            help="ig: baseline vs IG vs interactions (default); multiviz: MultiViz's cumulative "
            "stages U, U+C, U+C+R, U+C+R+P against a baseline",
        )

    def handle(self, *args, no_serve, addrport, items, demo, study, **options):
        which = study
        call_command("migrate", interactive=False, verbosity=0)
        user = self._researcher()
        if demo == "tabular":
            if which != "ig":
                raise CommandError("--study multiviz runs on the shapes demo; leave out --demo tabular")
            study = self._tabular_study(user, items or 200)
            return self._announce(study, addrport, no_serve)
        items = items or 320
        self.stdout.write("Training (or loading the cached) demo model…")
        load_or_train()
        dataset = self._dataset(user, items)
        model = RegisteredModel.objects.filter(owner=user, name="demo-fusion").first() or registered_model_create(
            owner=user, name="demo-fusion", adapter_path=DEMO_ADAPTER, check_dataset=dataset
        )
        if which == "multiviz":
            study = self._multiviz_study(user, dataset, model)
        else:
            study = Study.objects.filter(owner=user, name=DEMO_STUDY).first() or study_create(
                owner=user,
                name=DEMO_STUDY,
                dataset=dataset,
                model=model,
                conditions=[
                    ConditionSpec(name="baseline"),
                    ConditionSpec(name="ig-heatmap+tokens", views=["heatmap", "tokens"]),
                    ConditionSpec(name="interactions", views=["top_pairs", "interaction", "share"]),
                ],
                **_demo_design(),
            )
        if study.status in (Study.Status.DRAFT, Study.Status.PRECOMPUTING):
            self._precompute(study)
            study.refresh_from_db()
        if study.status == Study.Status.READY:
            study = study_launch(study=study)
        self._announce(study, addrport, no_serve)

    def _announce(self, study: Study, addrport: str, no_serve: bool) -> None:
        base = f"http://{addrport}"
        self.stdout.write(self.style.SUCCESS("\nThe demo study is live."))
        self.stdout.write(f"  Participant link: {base}{reverse('participant-entry', args=[study.public_id])}")
        self.stdout.write(f"  Researcher page:  {base}{reverse('study-detail', args=[study.pk])}")
        self.stdout.write(f"  Researcher login: {DEMO_USER} / {DEMO_PASSWORD}")
        if not no_serve:
            # whitenoise (mmeval/settings.py) serves the CSS and scripts: no --insecure needed.
            call_command("runserver", addrport, use_reloader=False)

    def _tabular_study(self, user, n_items: int) -> Study:
        """The plants demo: a table of measurements and a note; the model learnt that "balcony"
        means scorched (workers/engine/demo/tabular/data.py)."""
        self.stdout.write("Training (or loading the cached) plant model…")
        load_plant_model()
        dataset = Dataset.objects.filter(owner=user, name="demo-plants").first() or dataset_import(
            owner=user,
            name="demo-plants",
            jsonl_path=generate_plants(Path(settings.MEDIA_ROOT) / "demo-plants-source", n_items=n_items, seed=0),
        )
        model = RegisteredModel.objects.filter(owner=user, name="demo-plants").first() or registered_model_create(
            owner=user, name="demo-plants", adapter_path=TABULAR_ADAPTER, check_dataset=dataset
        )
        study = Study.objects.filter(owner=user, name=TABULAR_STUDY).first() or study_create(
            owner=user,
            name=TABULAR_STUDY,
            dataset=dataset,
            model=model,
            conditions=[ConditionSpec(name=name, views=views) for name, views in TABULAR_ARMS.items()],
            instructions=TABULAR_INSTRUCTIONS,
            modality_names=TABULAR_MODALITY_NAMES,
            **_demo_design(),
        )
        if study.status in (Study.Status.DRAFT, Study.Status.PRECOMPUTING):
            self._precompute(study)
            study.refresh_from_db()
        if study.status == Study.Status.READY:
            study = study_launch(study=study)
        return study

    def _multiviz_study(self, user, dataset: Dataset, model: RegisteredModel) -> Study:
        existing = Study.objects.filter(owner=user, name=MULTIVIZ_STUDY).first()
        if existing:
            return existing
        spec = multiviz_spec(name=MULTIVIZ_STUDY, dataset=dataset.name, model=model.name)
        return study_create_from_spec(owner=user, spec=study_spec_parse(data=spec, owner=user))

    def _researcher(self):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        return user

    def _dataset(self, user, n_items: int) -> Dataset:
        existing = Dataset.objects.filter(owner=user, name="demo-shapes").first()
        if existing:
            return existing
        out_dir = Path(settings.MEDIA_ROOT) / "demo-source"
        jsonl = generate_dataset(out_dir, n_items=n_items, seed=0)
        return dataset_import(owner=user, name="demo-shapes", jsonl_path=jsonl)

    def _precompute(self, study: Study) -> None:
        job = precompute_job_create(study=study)
        with tqdm(total=0, desc="Precompute", unit="item") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            result = precompute_run(job_id=job.pk, on_progress=progress)
        if result.get("status") != PrecomputeJob.Status.DONE:
            job.refresh_from_db()
            raise SystemExit(f"Precompute failed:\n{job.error}")
