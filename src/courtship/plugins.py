"""Loading plugins and collecting what they register.

``get_plugin_manager()`` builds a fresh :class:`pluggy.PluginManager` every time it is called:
nothing loads at import time, so tests and tools get exactly the plugins they ask for.
:class:`Registry` calls the ``register_*`` hooks of every plugin, one plugin at a time, so each
contribution remembers who made it and a name registered twice fails naming both plugins.

Two environment variables steer loading (names are entry-point names, such as
``courtship_twilio``, or distribution names, such as ``courtship-acme``; comma-separated):

* ``COURTSHIP_LOAD_PLUGINS``: an allow-list; only these load. Set but empty: none load.
* ``COURTSHIP_DISABLE_PLUGINS``: these never load (``PluginManager.set_blocked``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from courtship import hookspecs
from courtship.catalogue import Catalogue, FactSpec, builtin_catalogue
from courtship.channels import Channel, ChannelFactory

if TYPE_CHECKING:
    from courtship.sources import Source, SourceFactory

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "ChannelSpec",
    "LintRuleSpec",
    "PluginError",
    "Registry",
    "SourceSpec",
    "TemplateFilterSpec",
    "add_plugin_commands",
    "describe_plugins",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "courtship"
LOAD_ENV = "COURTSHIP_LOAD_PLUGINS"
DISABLE_ENV = "COURTSHIP_DISABLE_PLUGINS"

log = logging.getLogger(__name__)


class PluginError(Exception):
    """A plugin cannot be loaded, or what it registers clashes with another plugin."""


# ---------------------------------------------------------------------------------------------
# The plugin manager
# ---------------------------------------------------------------------------------------------


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with Courtship's hooks and, unless told not to, the installed plugins.

    Plugins come from the ``courtship`` entry-point group, filtered by ``COURTSHIP_LOAD_PLUGINS``
    and ``COURTSHIP_DISABLE_PLUGINS``. Every implementation is then checked against the hook
    specifications, so a misspelt hook (``register_channel``) fails here, loudly.

    :raises PluginError: a plugin fails to import, or implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        _block_filtered(pm)
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as error:
            raise PluginError(f"plugin {_plugin_label(pm, error.plugin)}: {error}") from error
        except Exception as error:
            # Entry points load in order: the first one neither loaded nor blocked is the culprit.
            culprit = next(
                (
                    entry_point.name
                    for entry_point in _entry_points()
                    if not pm.has_plugin(entry_point.name) and not pm.is_blocked(entry_point.name)
                ),
                "?",
            )
            raise PluginError(
                f"plugin '{culprit}' failed to load: {error!r}; "
                f"skip it with {DISABLE_ENV}={culprit}"
            ) from error
    check_hooks(pm)
    return pm


def check_hooks(pm: pluggy.PluginManager) -> None:
    """``pm.check_pending()`` with a message that names the plugin and suggests the right hook.

    :raises PluginError: a registered plugin implements a hook no specification declares.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        callers = {name: c for name, c in vars(pm.hook).items() if not name.startswith("_")}
        known = sorted(name for name, caller in callers.items() if caller.has_spec())
        for name, caller in sorted(callers.items()):
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if not impl.optionalhook:
                    hint = _did_you_mean(name, known)
                    raise PluginError(
                        f"plugin '{impl.plugin_name}' implements unknown hook '{name}'{hint}"
                    ) from error
        raise PluginError(str(error)) from error


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _plugin_label(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) if plugin is not None else None
    return f"'{name or getattr(plugin, '__name__', repr(plugin))}'"


def _env_names(variable: str) -> set[str] | None:
    """The comma-separated names in ``variable``, or None when it is unset."""
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _matches(entry_point: metadata.EntryPoint, names: set[str]) -> bool:
    wanted = {_normalise(name) for name in names}
    dist = getattr(entry_point, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else None
    return _normalise(entry_point.name) in wanted or (
        dist_name is not None and _normalise(dist_name) in wanted
    )


def _block_filtered(pm: pluggy.PluginManager) -> None:
    """Block every entry point the allow-list leaves out or the disable-list names."""
    allowed = _env_names(LOAD_ENV)
    disabled = _env_names(DISABLE_ENV) or set()
    entry_points = _entry_points()
    for entry_point in entry_points:
        # (a distribution's name is read from its metadata only when a list names one)
        if (allowed is not None and not _matches(entry_point, allowed)) or (
            disabled and _matches(entry_point, disabled)
        ):
            pm.set_blocked(entry_point.name)
    for variable, names in ((LOAD_ENV, allowed or set()), (DISABLE_ENV, disabled)):
        for name in sorted(names):
            if not any(_matches(entry_point, {name}) for entry_point in entry_points):
                log.warning("%s names '%s', but no such plugin is installed", variable, name)


@functools.cache
def installed() -> Registry:
    """What the installed plugins register, loaded once per process (``cache_clear()`` to
    reload, as tests that change ``COURTSHIP_*_PLUGINS`` do)."""
    return Registry(get_plugin_manager())


def add_plugin_commands(app: Any, pm: pluggy.PluginManager | None = None) -> None:
    """Let plugins add subcommands to the ``courtship`` typer ``app`` (``register_commands``);
    by default the plugins of :func:`installed`, loaded once for the command that runs too."""
    (pm or installed().pm).hook.register_commands(app=app)


# ---------------------------------------------------------------------------------------------
# What plugins register
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """A channel a plugin registered: ``factory(settings)`` builds it."""

    name: str
    factory: ChannelFactory
    plugin: str

    def create(self, settings: Mapping[str, Any] | None = None) -> Channel:
        """The channel, built from its settings (``channels.<name>`` in ``courtship.yaml``)."""
        return self.factory(dict(settings or {}))


@dataclass(frozen=True)
class SourceSpec:
    """A source type a plugin registered (``csv``, ``sql``): ``factory(settings, role, root)``
    builds a :class:`courtship.sources.Source` of customers or events."""

    name: str
    factory: SourceFactory
    plugin: str

    def create(self, settings: Mapping[str, Any], role: str, root: Path) -> Source:
        """The source of ``role`` (``customers`` or ``events``), built from its settings
        (``sources.<role>`` in ``courtship.yaml``); relative paths are read from ``root``."""
        return self.factory(dict(settings or {}), role, Path(root))


@dataclass(frozen=True)
class LintRuleSpec:
    """A lint rule a plugin registered: ``check(playbooks)`` yields findings."""

    id: str
    check: Callable[..., Iterable[Any]]
    description: str
    plugin: str


@dataclass(frozen=True)
class TemplateFilterSpec:
    """A Jinja filter a plugin registered."""

    name: str
    function: Callable[..., Any]
    plugin: str


_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_RULE_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_FILTER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(kind: str, name: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise TypeError(f"{kind} name {name!r} must match {pattern.pattern}")
    return name


def _check_callable(kind: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{kind} must be callable, not {type(value).__name__}")


def _make_channel(plugin: str, name: str, factory: ChannelFactory) -> ChannelSpec:
    _check_callable("the channel factory", factory)
    return ChannelSpec(_check_name("channel", name, _NAME), factory, plugin)


def _make_source(plugin: str, name: str, factory: SourceFactory) -> SourceSpec:
    _check_callable("the source factory", factory)
    return SourceSpec(_check_name("source", name, _NAME), factory, plugin)


def _make_fact(plugin: str, spec: FactSpec) -> FactSpec:
    if not isinstance(spec, FactSpec):
        raise TypeError(f"register() takes a courtship.catalogue.FactSpec, not {spec!r}")
    return replace(spec, source=plugin)


def _make_lint_rule(
    plugin: str, rule_id: str, check: Callable[..., Iterable[Any]], description: str = ""
) -> LintRuleSpec:
    _check_callable("the lint check", check)
    return LintRuleSpec(_check_name("lint rule", rule_id, _RULE_ID), check, description, plugin)


def _make_template_filter(
    plugin: str, name: str, function: Callable[..., Any]
) -> TemplateFilterSpec:
    _check_callable("the template filter", function)
    return TemplateFilterSpec(_check_name("template filter", name, _FILTER), function, plugin)


#: hook name → (what it registers, how to turn register()'s arguments into a spec).
_HOOKS: dict[str, tuple[str, Callable[..., Any]]] = {
    "register_channels": ("channel", _make_channel),
    "register_sources": ("source", _make_source),
    "register_facts": ("fact", _make_fact),
    "register_lint_rules": ("lint rule", _make_lint_rule),
    "register_template_filters": ("template filter", _make_template_filter),
}


def _call_each(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Any]]:
    """Call ``hook_name`` on each plugin in turn; (plugin name, spec) for everything registered.

    Plugins are called one by one (not through ``pm.hook``) so each ``register`` knows which
    plugin is calling it. An implementation receives only the arguments it names.
    """
    kind, make = _HOOKS[hook_name]
    collected: list[tuple[str, Any]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        plugin = impl.plugin_name

        def register(*args: Any, _plugin: str = plugin, **kwargs: Any) -> None:
            try:
                spec = make(_plugin, *args, **kwargs)
            except TypeError as error:
                raise PluginError(
                    f"plugin '{_plugin}' registered a {kind} wrongly in {hook_name}: {error}"
                ) from None
            collected.append((_plugin, spec))

        arguments = {"register": register}
        try:
            impl.function(**{name: arguments[name] for name in impl.argnames})
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(f"plugin '{plugin}' failed in {hook_name}: {error!r}") from error
    return collected


def _index(kind: str, items: list[tuple[str, Any]], key: Callable[[Any], str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin, spec in items:
        name = key(spec)
        if name in found:
            first = owners[name]
            raise PluginError(
                f"{kind} '{name}' is registered twice by plugin '{plugin}'"
                if first == plugin
                else f"{kind} '{name}' is registered by both plugin '{first}' and plugin "
                f"'{plugin}'; disable one with {DISABLE_ENV}"
            )
        found[name] = spec
        owners[name] = plugin
    return dict(sorted(found.items()))


class Registry:
    """What the plugins of one plugin manager registered, collected on first use.

    Each method returns a dict ordered by name. A name registered by two plugins (or twice by
    one) raises :class:`PluginError` naming both.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._cache: dict[str, dict[str, Any]] = {}

    def _collect(self, hook_name: str, key: Callable[[Any], str]) -> dict[str, Any]:
        if hook_name not in self._cache:
            kind = _HOOKS[hook_name][0]
            self._cache[hook_name] = _index(kind, _call_each(self.pm, hook_name), key)
        return self._cache[hook_name]

    def channels(self) -> dict[str, ChannelSpec]:
        """Channel name → :class:`ChannelSpec` (name, factory, plugin)."""
        return self._collect("register_channels", lambda spec: spec.name)

    def sources(self) -> dict[str, SourceSpec]:
        """Source type → :class:`SourceSpec` (name, factory, plugin)."""
        return self._collect("register_sources", lambda spec: spec.name)

    def facts(self) -> dict[str, FactSpec]:
        """Fact name → :class:`courtship.catalogue.FactSpec` (``source`` is the plugin).

        A plugin fact named like a core fact is an error too.
        """
        facts: dict[str, FactSpec] = self._collect("register_facts", lambda spec: spec.name)
        core = builtin_catalogue().facts
        for name, spec in facts.items():
            if name in core:
                raise PluginError(
                    f"fact '{name}' is registered by plugin '{spec.source}' but is already a "
                    "core fact"
                )
        return facts

    def lint_rules(self) -> dict[str, LintRuleSpec]:
        """Rule id → :class:`LintRuleSpec`."""
        return self._collect("register_lint_rules", lambda spec: spec.id)

    def template_filters(self) -> dict[str, TemplateFilterSpec]:
        """Filter name → :class:`TemplateFilterSpec`."""
        return self._collect("register_template_filters", lambda spec: spec.name)

    def catalogue(self, base: Catalogue | None = None) -> Catalogue:
        """``base`` (default: the built-in catalogue) plus the plugins' facts and channels."""
        extended = (base or builtin_catalogue()).copy()
        extended.facts.update(self.facts())
        extended.channels.update(self.channels())
        return extended


# ---------------------------------------------------------------------------------------------
# ``courtship plugins``
# ---------------------------------------------------------------------------------------------


def _distributions(pm: pluggy.PluginManager) -> dict[str, tuple[str | None, str | None]]:
    """Plugin name → (distribution name, version) for plugins loaded from entry points."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin)
        if name is not None:
            found[name] = (dist.metadata["Name"], dist.version)
    return found


def _commands_of(impl: pluggy.HookImpl) -> list[str]:
    import typer

    app = typer.Typer()
    impl.function(**{name: app for name in impl.argnames if name == "app"})
    names = [
        command.name or (command.callback.__name__.replace("_", "-") if command.callback else "?")
        for command in app.registered_commands
    ]
    names += [group.name or "?" for group in app.registered_groups]
    return sorted(names)


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """One entry per plugin, for ``courtship plugins``: name, distribution, version, hooks,
    and what it registered under each hook; disabled entry points are listed as such.

    Each plugin is described on its own, so a name clash between two plugins shows here
    instead of failing.
    """
    dists = _distributions(pm)
    registered: dict[str, dict[str, list[str]]] = {}
    for hook_name in _HOOKS:
        for plugin, spec in _call_each(pm, hook_name):
            label = hook_name.removeprefix("register_")
            name = spec.id if isinstance(spec, LintRuleSpec) else spec.name
            registered.setdefault(plugin, {}).setdefault(label, []).append(name)
    for impl in pm.hook.register_commands.get_hookimpls():
        registered.setdefault(impl.plugin_name, {})["commands"] = _commands_of(impl)

    described: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist_name, version = dists.get(name, (None, None))
        callers = pm.get_hookcallers(plugin) or []
        described.append(
            {
                "name": name,
                "distribution": dist_name,
                "version": version,
                "hooks": sorted(caller.name for caller in callers),
                "registered": {
                    kind: sorted(items) for kind, items in sorted(registered.get(name, {}).items())
                },
            }
        )
    for entry_point in _entry_points():
        if pm.is_blocked(entry_point.name):
            dist = getattr(entry_point, "dist", None)
            described.append(
                {
                    "name": entry_point.name,
                    "distribution": dist.metadata["Name"] if dist is not None else None,
                    "version": dist.version if dist is not None else None,
                    "disabled": True,
                }
            )
    return sorted(described, key=lambda entry: entry["name"])
