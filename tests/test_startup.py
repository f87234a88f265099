"""Start-up: a command imports only what it uses. `courtship --help` (plugins loaded, as the real
entry point does) imports no data, HTTP, database, graph, template, schema or server library;
their cost is paid by the commands that need them. Times are in bench/bench_startup.py."""

import json
import subprocess
import sys

HEAVY = (
    "polars",
    "httpx",
    "sqlalchemy",
    "psycopg",
    "networkx",
    "jsonschema",
    "jinja2",
    "starlette",
    "uvicorn",
    "scipy",
    "sklearn",
    "threadpoolctl",
    "plotly",
    "email_validator",
    "phonenumbers",
    "dask",
    "distributed",
)


def imported_by(*argv: str) -> list[str]:
    code = (
        "import json, sys\n"
        f"sys.argv = ['courtship', *{list(argv)!r}]\n"
        "from courtship.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_none_of_the_heavy_libraries():
    assert imported_by("--help") == []


def test_the_engine_imports_scipy_only_to_fit_a_model():
    code = (
        "import sys\nimport courtship.engine\nprint('scipy' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_plugin_builds_what_it_needs_only_when_used():
    code = (
        "import sys\nfrom courtship.plugins import installed\n"
        "channels = installed().catalogue().channels\n"
        "print('httpx' in sys.modules, 'sqlalchemy' in sys.modules)\n"
        "import courtship_twilio\ncourtship_twilio.TwilioChannel\n"
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]
