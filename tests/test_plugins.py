"""The plugin system: loading, switches, the registry, isolation of plugins, and their docs."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
import typer

import courtship
from courtship import hookspecs
from courtship.catalogue import FactSpec
from courtship.channels import ChannelConfigError, parse_retry_after, secret
from courtship.cli import plugins as plugins_command
from courtship.plugins import PluginError, Registry, describe_plugins, get_plugin_manager

pytest_plugins = ["pytester"]  # to run the contract kit on a misbehaving channel

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {
    "courtship_smtp": "email",
    "courtship_twilio": "sms",
    "courtship_instagram": "instagram",
    "courtship_outbox": "outbox",
}


@pytest.fixture(autouse=True)
def no_switches(monkeypatch):
    monkeypatch.delenv("COURTSHIP_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("COURTSHIP_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def distribution(tmp_path, monkeypatch):
    """Install a fake third-party distribution: ``distribution(name, source)`` → module name.

    The distribution declares ``<module> = <module>`` in the ``courtship`` entry-point group,
    as a real plugin's pyproject.toml would.
    """
    made = []

    def make(dist_name, source):
        module = dist_name.replace("-", "_")
        info = tmp_path / f"{module}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.2.3\n"
        )
        (info / "entry_points.txt").write_text(f"[courtship]\n{module} = {module}\n")
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        made.append(module)
        return module

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    for module in made:
        sys.modules.pop(module, None)


ACME_MAIL = """
    import courtship

    class AcmeMail:
        name = "email"

    @courtship.hookimpl
    def register_channels(register):
        register("email", lambda settings: AcmeMail())
"""


# -- loading -------------------------------------------------------------------------------------


def test_hookimpl_is_reexported():
    assert courtship.hookimpl is hookspecs.hookimpl
    assert "hookimpl" in courtship.__all__


def test_first_party_plugins_load_through_entry_points():
    pm = get_plugin_manager()
    for name in FIRST_PARTY:
        assert pm.has_plugin(name)
    channels = Registry(pm).channels()
    for plugin, channel in FIRST_PARTY.items():
        assert channels[channel].plugin == plugin
        assert channels[channel].name == channel


def test_without_entry_points_nothing_is_loaded():
    pm = get_plugin_manager(load_entrypoints=False)
    assert pm.get_plugins() == set()
    assert Registry(pm).channels() == {}


def test_importing_courtship_loads_no_plugin():
    code = (
        "import sys, courtship, courtship.plugins, courtship.channels, courtship.hookspecs; "
        "print([m for m in sys.modules if m.startswith('courtship_')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_allow_list_loads_only_the_named_plugins(monkeypatch):
    monkeypatch.setenv("COURTSHIP_LOAD_PLUGINS", "courtship_outbox, courtship_smtp")
    pm = get_plugin_manager()
    assert sorted(Registry(pm).channels()) == ["email", "outbox"]
    assert pm.is_blocked("courtship_twilio")


def test_an_empty_allow_list_loads_nothing(monkeypatch):
    monkeypatch.setenv("COURTSHIP_LOAD_PLUGINS", "")
    assert Registry(get_plugin_manager()).channels() == {}


def test_allow_list_takes_distribution_names(monkeypatch, distribution):
    module = distribution("acme-sms", ACME_MAIL.replace('"email"', '"acme-sms"'))
    monkeypatch.setenv("COURTSHIP_LOAD_PLUGINS", "acme-sms")
    pm = get_plugin_manager()
    assert [spec.plugin for spec in Registry(pm).channels().values()] == [module]


def test_allow_list_warns_about_unknown_names(monkeypatch, caplog):
    monkeypatch.setenv("COURTSHIP_LOAD_PLUGINS", "courtship_outbox,courtship_smpt")
    get_plugin_manager()
    assert "COURTSHIP_LOAD_PLUGINS names 'courtship_smpt'" in caplog.text


def test_disable_list_blocks_plugins(monkeypatch):
    monkeypatch.setenv("COURTSHIP_DISABLE_PLUGINS", "courtship_twilio,courtship_instagram")
    pm = get_plugin_manager()
    assert pm.is_blocked("courtship_twilio")
    assert sorted(Registry(pm).channels()) == ["email", "outbox"]
    described = {entry["name"]: entry for entry in describe_plugins(pm)}
    assert described["courtship_twilio"]["disabled"] is True


def test_a_misspelt_hook_fails_loudly(distribution):
    distribution(
        "acme-typo",
        """
        import courtship

        @courtship.hookimpl
        def register_channel(register):
            register("acme", object)
        """,
    )
    with pytest.raises(PluginError) as error:
        get_plugin_manager()
    assert str(error.value) == (
        "plugin 'acme_typo' implements unknown hook 'register_channel'; "
        "did you mean 'register_channels'?"
    )
    assert isinstance(error.value.__cause__, pluggy.PluginValidationError)


def test_a_hook_with_an_unknown_argument_fails(distribution):
    distribution(
        "acme-args",
        """
        import courtship

        @courtship.hookimpl
        def register_channels(register, settings):
            pass
        """,
    )
    with pytest.raises(PluginError, match="acme_args"):
        get_plugin_manager()


def test_a_plugin_that_cannot_import_is_named(distribution):
    distribution("acme-broken", "import no_such_module_anywhere\n")
    with pytest.raises(PluginError) as error:
        get_plugin_manager()
    assert str(error.value).startswith("plugin 'acme_broken' failed to load: ModuleNotFoundError")
    assert str(error.value).endswith("skip it with COURTSHIP_DISABLE_PLUGINS=acme_broken")


# -- the registry --------------------------------------------------------------------------------


def test_a_duplicate_channel_names_both_plugins(distribution):
    distribution("acme-mail", ACME_MAIL)
    with pytest.raises(PluginError) as error:
        Registry(get_plugin_manager()).channels()
    message = str(error.value)
    assert message.startswith("channel 'email' is registered by both plugin '")
    assert "'courtship_smtp'" in message
    assert "'acme_mail'" in message


def test_disabling_one_of_two_resolves_the_clash(distribution, monkeypatch):
    distribution("acme-mail", ACME_MAIL)
    monkeypatch.setenv("COURTSHIP_DISABLE_PLUGINS", "courtship_smtp")
    assert Registry(get_plugin_manager()).channels()["email"].plugin == "acme_mail"


class Everything:
    """A plugin that registers one of everything; its hooks take only the arguments they use."""

    @courtship.hookimpl
    def register_facts(self, register):
        register(FactSpec(name="loyalty_points", type="integer", description="points"))

    @courtship.hookimpl
    def register_lint_rules(self, register):
        register("no-weekend-sends", lambda playbooks: [], description="no sends on weekends")

    @courtship.hookimpl
    def register_template_filters(self, register):
        register("shout", str.upper)

    @courtship.hookimpl
    def register_sources(self, register):
        register("crm", lambda settings: [])

    @courtship.hookimpl
    def register_commands(self, app):
        @app.command()
        def loyalty_report() -> None:
            """Print the loyalty report."""

    @courtship.hookimpl
    def register_channels(self):  # opt-in arguments: it may take fewer than the spec
        pass


@pytest.fixture
def everything():
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = Everything()
    pm.register(plugin, name="everything")
    try:
        yield pm
    finally:
        pm.unregister(plugin)


def test_registry_collects_every_kind(everything):
    registry = Registry(everything)
    fact = registry.facts()["loyalty_points"]
    assert (fact.type, fact.source) == ("integer", "everything")
    assert registry.lint_rules()["no-weekend-sends"].description == "no sends on weekends"
    assert registry.template_filters()["shout"].function("hi") == "HI"
    assert registry.sources()["crm"].plugin == "everything"
    assert registry.channels() == {}
    catalogue = registry.catalogue()
    assert "loyalty_points" in catalogue.facts
    assert "days_since_last_order" in catalogue.facts


def test_describe_plugins_says_what_each_registered(everything):
    (entry,) = describe_plugins(everything)
    assert entry == {
        "name": "everything",
        "distribution": None,
        "version": None,
        "hooks": [
            "register_channels",
            "register_commands",
            "register_facts",
            "register_lint_rules",
            "register_sources",
            "register_template_filters",
        ],
        "registered": {
            "commands": ["loyalty-report"],
            "facts": ["loyalty_points"],
            "lint_rules": ["no-weekend-sends"],
            "sources": ["crm"],
            "template_filters": ["shout"],
        },
    }


def test_plugin_commands_join_the_app(everything):
    from courtship.plugins import add_plugin_commands

    app = typer.Typer()
    add_plugin_commands(app, everything)
    assert [command.callback.__name__ for command in app.registered_commands] == ["loyalty_report"]


def test_a_plugin_fact_may_not_shadow_a_core_fact():
    class Shadow:
        @courtship.hookimpl
        def register_facts(self, register):
            register(FactSpec(name="days_since_last_order", type="number"))

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Shadow(), name="shadow")
    with pytest.raises(
        PluginError,
        match="'days_since_last_order' is registered by plugin 'shadow' but is already a core fact",
    ):
        Registry(pm).facts()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("register('Bad Name', object)", "channel name 'Bad Name' must match"),
        ("register('ok', 'not callable')", "the channel factory must be callable"),
        ("register('ok')", "missing 1 required positional argument"),
        ("1 / 0", "failed in register_channels: ZeroDivisionError"),
    ],
)
def test_a_plugin_that_registers_wrongly_is_named(call, expected):
    namespace = {}
    exec(f"def register_channels(register):\n    {call}\n", namespace)
    plugin = type(
        "Wrong",
        (),
        {"register_channels": staticmethod(courtship.hookimpl(namespace["register_channels"]))},
    )
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="wrong")
    with pytest.raises(PluginError) as error:
        Registry(pm).channels()
    assert "plugin 'wrong'" in str(error.value)
    assert expected in str(error.value)


def test_channel_specs_build_channels(tmp_path):
    spec = Registry(get_plugin_manager()).channels()["outbox"]
    channel = spec.create({"folder": str(tmp_path)})
    assert channel.name == "outbox"


# -- the command ---------------------------------------------------------------------------------


def test_plugins_command_prints_json(capsys):
    plugins_command.command()
    described = json.loads(capsys.readouterr().out)
    by_name = {entry["name"]: entry for entry in described}
    assert by_name["courtship_smtp"]["registered"] == {"channels": ["email"]}
    assert by_name["courtship_smtp"]["hooks"] == ["register_channels"]
    assert by_name["courtship_smtp"]["version"] == courtship.__version__


def test_plugins_command_shows_a_clash_instead_of_failing(distribution, capsys):
    distribution("acme-mail", ACME_MAIL)
    plugins_command.command()
    by_name = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert by_name["acme_mail"]["registered"] == {"channels": ["email"]}
    assert by_name["acme_mail"]["version"] == "1.2.3"
    assert by_name["courtship_smtp"]["registered"] == {"channels": ["email"]}


def test_plugins_command_reports_a_broken_plugin(distribution, capsys):
    distribution(
        "acme-typo", "import courtship\n\n@courtship.hookimpl\ndef register_fact(): pass\n"
    )
    with pytest.raises(typer.Exit) as exit_info:
        plugins_command.command()
    assert exit_info.value.exit_code == 2
    assert capsys.readouterr().err == (
        "courtship: plugin 'acme_typo' implements unknown hook 'register_fact'; "
        "did you mean 'register_facts'?\n"
    )


# -- the contract kit ----------------------------------------------------------------------------


MISBEHAVING_CHANNEL = '''
    import pytest
    from courtship.channels import Delivery
    from courtship.testing import ChannelContract, sample_message


    class Leaky:
        """Claims idempotency it lacks, shows its token, raises when the peer is away."""

        name = "leaky"
        idempotent = True

        def __init__(self, sent, reachable=True):
            self.sent, self.reachable, self.token = sent, reachable, "hunter2"

        def __repr__(self):
            return f"Leaky(token={self.token})"

        def check(self, message):
            return None

        def send(self, message):
            if not self.reachable:
                raise ConnectionError(f"no peer (token {self.token})")
            self.sent.append(message)
            return Delivery.delivered()


    class TestLeaky(ChannelContract):
        @pytest.fixture
        def sent(self):
            return []

        @pytest.fixture
        def channel(self, sent):
            return Leaky(sent)

        @pytest.fixture
        def message(self):
            return sample_message(channel="leaky")

        @pytest.fixture
        def received(self, sent):
            return lambda: sent

        @pytest.fixture
        def unreachable_channel(self):
            return Leaky([], reachable=False)

        @pytest.fixture
        def secrets(self):
            return ["hunter2"]
'''


def test_the_contract_kit_catches_a_misbehaving_channel(pytester):
    pytester.makepyfile(test_leaky=textwrap.dedent(MISBEHAVING_CHANNEL))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    failed = sorted(
        line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED")
    )
    assert failed == [
        "test_repeated_key_is_delivered_once",
        "test_secrets_stay_out_of_reasons",
        "test_secrets_stay_out_of_repr",
        "test_unreachable_peer_returns_a_delivery",
    ]
    result.assert_outcomes(passed=7, failed=4)


def test_the_pytest_plugin_offers_its_fixtures(courtship_plugin_manager, http_peer):
    assert courtship_plugin_manager.get_plugins() == set()
    assert http_peer.url.startswith("http://127.0.0.1:")


# -- secrets -------------------------------------------------------------------------------------


def test_secret_reads_the_named_variable(monkeypatch):
    monkeypatch.setenv("ACME_TOKEN", "t0ken")
    assert secret({"token_env": "ACME_TOKEN"}, "token_env") == "t0ken"


def test_secret_errors_name_setting_and_variable(monkeypatch):
    monkeypatch.delenv("ACME_TOKEN", raising=False)
    with pytest.raises(ChannelConfigError) as error:
        secret({"token_env": "ACME_TOKEN"}, "token_env")
    assert str(error.value) == (
        "setting 'token_env' names the environment variable ACME_TOKEN, which is not set"
    )
    with pytest.raises(ChannelConfigError, match="missing setting 'token_env'"):
        secret({}, "token_env")


def test_retry_after_takes_seconds_or_a_date():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- isolation: core never imports a plugin; plugins import only the public API ------------------

PUBLIC_API = {"courtship", "courtship.channels", "courtship.catalogue", "courtship.sources"}
PLUGIN_DEPENDENCIES = {
    "courtship_twilio": {"httpx"},
    "courtship_instagram": {"httpx"},
    "courtship_files": {"polars"},
    "courtship_sql": {"polars", "sqlalchemy"},
}


def imports_of(path):
    """(module, line) for every absolute import in ``path``; relative imports are left out.

    ``from courtship import channels`` counts as ``courtship.channels``; ``from courtship import
    hookimpl`` as ``courtship``.
    """
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "courtship":
                for alias in node.names:
                    top_level = alias.name in {"hookimpl", "__version__"}
                    yield "courtship" if top_level else f"courtship.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno


def test_the_import_check_sees_private_imports(tmp_path):
    source = tmp_path / "plugin.py"
    source.write_text(
        "import courtship\nfrom courtship import hookimpl, plugins\nimport courtship.engine\n"
        "from courtship.channels import Message\nfrom . import sibling\n"
    )
    assert list(imports_of(source)) == [
        ("courtship", 1),
        ("courtship", 2),
        ("courtship.plugins", 2),
        ("courtship.engine", 3),
        ("courtship.channels", 4),
    ]


def test_core_never_imports_a_plugin():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "src" / "courtship").rglob("*.py"))
        for module, line in imports_of(path)
        if module.split(".")[0].startswith("courtship_")
    ]
    assert offenders == []


def plugin_packages():
    return sorted(path for path in (ROOT / "plugins").iterdir() if (path / "__init__.py").exists())


@pytest.mark.parametrize("package", plugin_packages(), ids=lambda path: path.name)
def test_plugins_import_only_the_public_api(package):
    allowed_roots = set(sys.stdlib_module_names) | PLUGIN_DEPENDENCIES.get(package.name, set())
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for module, line in imports_of(path):
            root = module.split(".")[0]
            if module in PUBLIC_API or root == package.name or root == "__future__":
                continue
            if root != "courtship" and root in allowed_roots:
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offenders == []


def test_every_first_party_plugin_is_an_entry_point():
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in FIRST_PARTY:
        assert f'{name} = "{name}"' in pyproject
        assert f'"plugins/{name}"' in pyproject


# -- docs: a page per hook with its exact signature ----------------------------------------------


def hook_signatures():
    tree = ast.parse((ROOT / "src" / "courtship" / "hookspecs.py").read_text())
    return {
        node.name: f"{node.name}({ast.unparse(node.args)}) -> {ast.unparse(node.returns)}"
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "hookspec" for d in node.decorator_list)
    }


def test_the_hook_list_is_complete():
    pm = get_plugin_manager(load_entrypoints=False)
    specified = {name for name in vars(pm.hook) if not name.startswith("_")}
    assert (
        set(hook_signatures())
        == specified
        == {
            "register_channels",
            "register_sources",
            "register_facts",
            "register_lint_rules",
            "register_commands",
            "register_template_filters",
        }
    )


@pytest.mark.parametrize(("hook", "signature"), sorted(hook_signatures().items()))
def test_every_hook_has_a_docs_page_with_its_exact_signature(hook, signature):
    page = ROOT / "docs" / "plugins" / "hooks" / f"{hook}.md"
    assert page.exists(), f"write {page.relative_to(ROOT)}"
    text = page.read_text()
    assert signature in text
    assert "@courtship.hookimpl" in text  # an example
    assert f"hooks/{hook}.md" in (ROOT / "docs" / "plugins" / "index.md").read_text()
