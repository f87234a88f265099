"""Templates in the customer's language: `NAME.TONE.LANG.md` beside the default files, chosen by
the customer's `language` (exact, then its base language, then the default), in their tone."""

from __future__ import annotations

from pathlib import Path

from conftest import customer

from courtship.templates import choose, languages, template_names
from courtship.validate import validate_paths

WELCOME = """
    id: welcome
    title: Welcome
    stage: new
    category: transactional
    trigger: {event: signup}
    respond:
      - send: {channel: email, template: welcome}
"""


def speaking(cid: str, language: str, tone: str = "buddy") -> str:
    return customer(cid, tone=tone, preferred="email").replace(",en,", f",{language},")


def test_each_customer_reads_their_language_in_their_tone(world):
    world.playbook(WELCOME)
    for tone in ("buddy", "salesy", "direct"):
        world.template(f"welcome.{tone}", f"Hello {{{{ first_name }}}} ({tone})")
    world.template("welcome.buddy.fr", "Salut {{ first_name }} !")
    world.template("welcome.fr", "Bonjour {{ first_name }}.")
    world.template("welcome.direct.pt-BR", "Olá {{ first_name }}.")
    people = {
        "c-001": ("fr-CA", "buddy"),  # base language fr, its buddy file
        "c-002": ("fr", "direct"),  # no direct in French: the toneless French file
        "c-003": ("en-GB", "salesy"),  # no English files: the default, in their tone
        "c-004": ("PT-br", "direct"),  # tags match whatever their case
        "c-005": ("de", "buddy"),
    }
    for cid, (language, tone) in people.items():
        world.customers.append(speaking(cid, language, tone))
        world.event(cid, "signup", "2026-11-23T12:00:00Z")
    texts = {d.customer_id: d.text.strip() for d in world.plan().sends}
    assert texts == {
        "c-001": "Salut Maya !",
        "c-002": "Bonjour Maya.",
        "c-003": "Hello Maya (salesy)",
        "c-004": "Olá Maya.",
        "c-005": "Hello Maya (buddy)",
    }


def test_choose_falls_back_language_by_language(tmp_path):
    files = {
        "": {"buddy": Path("d.buddy"), "direct": Path("d.direct")},
        "fr": {"buddy": Path("fr.buddy")},
        "fr-CA": {"": Path("frca")},
    }
    assert choose(files, "fr-CA", "buddy") == Path("frca")
    assert choose(files, "fr-BE", "buddy") == Path("fr.buddy")
    assert choose(files, "fr-BE", "direct") == Path("d.direct")
    assert choose(files, None, "direct") == Path("d.direct")
    assert choose(files, "", "salesy") is None


def test_language_files_are_found_and_named(tmp_path):
    for name in ("welcome.buddy.md", "welcome.buddy.fr.md", "welcome.pt-BR.md", "welcome.x.y.md"):
        (tmp_path / name).write_text("Hi {{ first_name }}\n")
    assert languages(tmp_path, "welcome") == ["fr", "pt-BR"]
    assert template_names(tmp_path) == {"welcome", "welcome.x.y"}


def test_validate_warns_of_a_language_without_a_tone_the_default_has(world):
    world.playbook(WELCOME)
    for tone in ("buddy", "salesy", "direct"):
        world.template(f"welcome.{tone}", "Hello {{ first_name }}")
        world.template(f"welcome.{tone}.es", "Hola {{ first_name }}")
    world.template("welcome.buddy.fr", "Salut {{ first_name }}")
    world.template("welcome.salesy.de", "Hallo {{ bogus_fact }}")
    report = validate_paths([world.root / "playbooks"])
    warnings = [f for f in report.findings if f.rule_id == "template-language-tone-missing"]
    assert sorted(f.message.split(" has no")[0] for f in warnings) == [
        "template 'welcome' in de",
        "template 'welcome' in fr",
    ]
    assert all(not f.is_error for f in warnings)
    assert "add welcome.salesy.fr.md, welcome.direct.fr.md" in warnings[1].hint
    # language files are checked like any template
    unknown = [f for f in report.errors if f.rule_id == "template-unknown-variable"]
    assert [Path(f.path).name for f in unknown] == ["welcome.salesy.de.md"]
