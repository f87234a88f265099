"""Every hook a Courtship plugin may implement.

A plugin is a module (or object) registered under the ``courtship`` entry-point group whose
functions carry ``@courtship.hookimpl`` and are named after a hook below. Each ``register_*`` hook
receives a ``register`` callable: call it once per thing the plugin contributes. Core keeps the
collection (:class:`courtship.plugins.Registry`), so two plugins that register the same name fail
with an error naming both.

Hooks only ever gain arguments; an implementation may accept fewer arguments than its spec
(pluggy's opt-in arguments), so a plugin written today keeps working. ``docs/plugins/hooks/``
has one page per hook with its exact signature and an example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    import typer

    from courtship.catalogue import FactSpec
    from courtship.channels import ChannelFactory
    from courtship.findings import Finding
    from courtship.playbook import Playbook
    from courtship.sources import SourceFactory

hookspec = HookspecMarker("courtship")
hookimpl = HookimplMarker("courtship")

#: ``register(name, factory)``: ``factory(settings)`` builds the channel (courtship.channels).
RegisterChannel = Callable[[str, "ChannelFactory"], None]
#: ``register(name, factory)``: ``factory(settings, role, root)`` builds a source of customers or
#: events (courtship.sources).
RegisterSource = Callable[[str, "SourceFactory"], None]
#: ``register(spec)``: one fact, typed, for conditions and templates.
RegisterFact = Callable[["FactSpec"], None]
#: ``register(rule_id, check, description)``: ``check(playbooks)`` yields findings.
LintCheck = Callable[[Sequence["Playbook"]], Iterable["Finding"]]
RegisterLintRule = Callable[..., None]
#: ``register(name, function)``: a Jinja filter templates may use, ``{{ x | name }}``.
RegisterTemplateFilter = Callable[[str, Callable[..., Any]], None]


# ---------------------------------------------------------------------------------------------
# Delivery: the ways Courtship reaches a customer
# ---------------------------------------------------------------------------------------------


@hookspec
def register_channels(register: RegisterChannel) -> None:
    """Add channels (email, SMS, a chat app, a webhook) that ``send`` steps can name.

    Runs once per plugin manager, the first time core asks for the channels: when ``validate``
    checks the channel names playbooks use, and when ``run`` builds the channels configured under
    ``channels:`` in ``courtship.yaml``. Registering costs nothing: the factory is only called
    for channels the project configures, with their settings.

    :param register: ``register(name, factory)``. ``name`` is what playbooks write
        (``send: {channel: sms}``); ``factory(settings)`` returns a
        :class:`courtship.channels.Channel` and raises
        :class:`courtship.channels.ChannelConfigError` for bad settings.
    :returns: nothing; register through ``register``.
    """


# ---------------------------------------------------------------------------------------------
# Data: where customers and events come from, and what is known about them
# ---------------------------------------------------------------------------------------------


@hookspec
def register_sources(register: RegisterSource) -> None:
    """Add sources of customers and events (a CSV file, JSON Lines, a SQL query, an API).

    Runs once per plugin manager, the first time core asks for the sources: when a run or a
    plan reads the ``customers:`` and ``events:`` configured in ``courtship.yaml``.

    :param register: ``register(name, factory)``. ``name`` is the source type the project file
        names (``sources: {events: {type: sql, …}}``); ``factory(settings, role, root)`` returns
        a :class:`courtship.sources.Source` for ``role`` (``customers`` or ``events``), reading
        relative paths from the project ``root``, and raises
        :class:`courtship.sources.SourceError` naming the setting for bad settings.
    :returns: nothing; register through ``register``.
    """


@hookspec
def register_facts(register: RegisterFact) -> None:
    """Declare facts the plugin provides, so conditions and templates may read them.

    Runs once per plugin manager, when validation builds the facts catalogue: a declared fact
    is type-checked in conditions like a built-in one. A name that is already a core fact, or
    that another plugin declares, is an error naming both.

    :param register: ``register(spec)`` with a :class:`courtship.catalogue.FactSpec`
        (name, type, description, unit, …); its ``source`` is set to the plugin's name.
    :returns: nothing; register through ``register``.
    """


# ---------------------------------------------------------------------------------------------
# Checks: what ``courtship lint`` reports
# ---------------------------------------------------------------------------------------------


@hookspec
def register_lint_rules(register: RegisterLintRule) -> None:
    """Add lint rules: house rules checked over all playbooks at once.

    Runs once per plugin manager, when ``courtship lint`` starts. Each check receives every
    valid playbook and yields :class:`courtship.findings.Finding` objects whose ``rule_id`` is
    the rule's id.

    :param register: ``register(rule_id, check, description="")``. ``rule_id`` is kebab-case
        (``no-weekend-sends``); ``check(playbooks)`` yields findings; ``description`` is one line
        for ``--help`` and the docs.
    :returns: nothing; register through ``register``.
    """


# ---------------------------------------------------------------------------------------------
# Command line and templates
# ---------------------------------------------------------------------------------------------


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add subcommands to the ``courtship`` command line.

    Runs once, when the command line starts, before the arguments are parsed.

    :param app: the root ``typer.Typer`` application; add commands with
        ``@app.command()`` or groups with ``app.add_typer(...)``.
    :returns: nothing; add commands to ``app``.
    """


@hookspec
def register_template_filters(register: RegisterTemplateFilter) -> None:
    """Add Jinja filters that message templates may use: ``{{ first_name | shout }}``.

    Runs once per plugin manager, when the template environment is built (for validation and
    for rendering), so a template using the filter validates.

    :param register: ``register(name, function)``; ``function(value, *args)`` returns the
        filtered value. Templates render in Jinja's sandbox: keep filters pure.
    :returns: nothing; register through ``register``.
    """
