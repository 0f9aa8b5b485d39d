"""Result files: every bad file is one ValueError that names the file, the field and
what was expected; saving is atomic and refuses what loading would refuse."""

from __future__ import annotations

import copy
import functools
import json
import os
import pickle
import stat

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from core_testing import runs_result, sweeps_result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_fakes import FormulaBackend

from lrfind_core import LRFindResult, result_file
from lrfind_core.cli import main
from lrfind_core.records import IndependentRuns, SearchRecord, SweepEnsemble
from lrfind_core.schedules import exponential_schedule
from lrfind_core.serialization import MAX_POINTS
from lrfind_core.settings import resolve_settings
from lrfind_core.shell import call_settings, run_finder

LRS = exponential_schedule(1e-6, 1.0, 40)


def bowl(shift: float = 0.0, n: int = 40) -> np.ndarray:
    """Falls from 3 to a minimum near point 25 + shift, then rises until it diverges."""
    steps = np.arange(n, dtype=np.float64)
    return (1.0 + 2.0 / (1.0 + np.exp((steps - 15 - shift) / 3))
            + np.maximum(0, steps - 28 - shift) ** 2)


@functools.cache
def valid_results() -> dict[str, LRFindResult]:
    """One result of each kind: a plain curve, 3 sweeps, independent runs, a search."""
    plain = LRFindResult.from_curve(
        LRS, bowl(), meta={"backend": "test", "facts": {"n": [1, 2.5, None, True, "x"]}}
    )
    three = resolve_settings(start_lr=LRS[0], end_lr=LRS[-1], num_steps=40, num_sweeps=3)
    ensemble = sweeps_result(LRS, [bowl(-2), bowl(0), bowl(3)], three, meta={"k": 3})
    grid = resolve_settings(mode="independent", start_lr=1e-4, end_lr=1.0, independent_lrs=6,
                            steps_per_lr=3, average_last=2, num_sweeps=2)
    losses = np.array([[[3, 2, 1.5], [3, 1.5, 1], [3, 1, 0.5], [3, 2, 2], [3, 9, 30],
                        [3, np.inf, np.nan]]] * 2)
    losses[1] *= 1.1
    runs = runs_result(grid.independent_grid(), losses, grid)
    search = run_finder(
        FormulaBackend(),
        call_settings(None, mode="search", training_steps=300, budget_steps=900,
                      for_schedule="one_cycle"),
        has_validation=True,
    )
    return {"plain": plain, "ensemble": ensemble, "runs": runs, "search": search}


def document(kind: str = "plain") -> dict:
    """A fresh, JSON-parsed document of a valid result."""
    return json.loads(json.dumps(valid_results()[kind].to_dict(), allow_nan=False))


def assert_one_clean_error(error: ValueError, source: str) -> str:
    """The message of a refused document: one line, naming the source first; never the
    loader's safety net."""
    message = str(error)
    assert message.startswith(f"{source}: "), message
    assert "\n" not in message
    assert "could not be checked" not in message, message
    return message


def assert_round_trip(loaded: LRFindResult, path) -> None:
    """A loaded result is usable, and saving it and loading it again gives it back."""
    repr(loaded)
    loaded.save(path)
    assert LRFindResult.load(path) == loaded
    assert LRFindResult.from_dict(loaded.to_dict()) == loaded


def test_every_kind_of_result_survives_a_round_trip(tmp_path):
    for kind, result in valid_results().items():
        path = tmp_path / f"{kind}.json"
        result.save(path)
        assert LRFindResult.load(path) == result, kind
        assert LRFindResult.from_dict(document(kind)) == result, kind
    assert valid_results()["ensemble"].ensemble.num_sweeps == 3
    assert valid_results()["runs"].runs is not None
    assert valid_results()["search"].search is not None


# --- every bad file of issue 17, and more ------------------------------------------------


def _set(*path_and_value):
    """A mutation that sets ``doc[path...] = value``."""
    *path, value = path_and_value

    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(*path):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _text(make):
    """A case given as the file's text, made from a valid document."""
    make.is_text = True
    return make


def _deep_meta(depth):
    def make(doc):
        doc["meta"]["deep"] = 0
        return json.dumps(doc).replace('"deep": 0', '"deep": ' + "[" * depth + "]" * depth)

    return _text(make)


def _old_document(doc, version):
    config = doc.pop("settings")
    for key in ("independent_lrs", "accumulation_steps", "val_every", "val_batches",
                "training_steps", "budget_steps"):
        config.pop(key)
    config["default_method"] = config.pop("method")
    details = doc.pop("suggestions")
    return {**doc, "version": version, "config": config, "suggestion_details": details}


# (id, kind of valid result, mutation or text, field named, what was expected)
BAD_FILES = [
    ("json-list", "plain", _text(lambda doc: "[1, 2, 3]"), "",
     "expected a JSON object holding an lrfind result, got a list of 3 items"),
    ("missing-lrs", "plain", _drop("lrs"), "lrs", "missing: this field is required"),
    ("NaN-string-in-losses", "plain", _set("losses", 5, "NaN"), "losses[5]",
     "expected a number, or one of the strings 'nan', 'inf', '-inf', got 'NaN'"),
    ("abc-in-losses", "plain", _set("losses", 5, "abc"), "losses[5]",
     "expected a number, or one of the strings 'nan', 'inf', '-inf', got 'abc'"),
    ("lrs-a-string", "plain", _set("lrs", "0.1"), "lrs",
     "expected a list of numbers, got '0.1'"),
    ("null-in-lrs", "plain", _set("lrs", 3, None), "lrs[3]",
     "expected a number, or one of the strings 'nan', 'inf', '-inf', got null"),
    ("truncated", "plain", _text(lambda doc: json.dumps(doc, indent=1)[:300]), "",
     "not valid JSON"),
    ("empty", "plain", _text(lambda doc: ""), "", "the file is empty"),
    ("blank", "plain", _text(lambda doc: " \n\t"), "", "the file is empty"),
    ("meta-100000-deep", "plain", _deep_meta(100_000), "", "JSON nested too deeply to read"),
    ("meta-150-deep", "plain", _deep_meta(150), "meta.deep",
     "nested deeper than 100 levels; expected at most 100"),
    ("all-NaN-lrs", "plain", lambda doc: doc.update(lrs=["nan"] * len(doc["lrs"])), "lrs[0]",
     "expected a finite number > 0, got 'nan'"),
    ("decreasing-lrs", "plain", lambda doc: doc.update(lrs=doc["lrs"][::-1]), "lrs[1]",
     "expected a value greater than the one before it"),
    ("repeated-lr", "plain", lambda doc: doc["lrs"].__setitem__(4, doc["lrs"][3]), "lrs[4]",
     "the values must be strictly increasing"),
    ("negative-lr", "plain", _set("lrs", 0, -1e-6), "lrs[0]",
     "expected a finite number > 0, got -1e-06"),
    ("bool-lr", "plain", _set("lrs", 0, True), "lrs[0]", "expected a number"),
    ("3-losses-for-37-lrs", "plain", lambda doc: doc.update(losses=doc["losses"][:3]),
     "losses", "expected 37 values (as many as lrs), got 3"),
    ("huge-int-loss", "plain", _set("losses", 2, 10**400), "losses[2]",
     "expected a number within the float64 range, got an integer of 1329 bits"),
    ("stop-step-10**9", "plain", _set("stop_step", 10**9), "stop_step",
     "expected null or an integer from 0 to 36, got 1000000000"),
    ("stop-step-a-float", "plain", _set("stop_step", 3.0), "stop_step",
     "expected null or an integer from 0 to 36, got 3.0"),
    ("suggestion-lr-minus-1", "plain", _set("suggestions", "valley", "lr", -1),
     "suggestions.valley.lr", "expected null or a finite number > 0, got -1"),
    ("suggestion-index-beyond", "plain", _set("suggestions", "valley", "index", 37),
     "suggestions.valley.index", "expected null or an integer from 0 to 36, got 37"),
    ("suggestion-curve-lr-inf", "plain", _set("suggestions", "steep", "curve_lr", "inf"),
     "suggestions.steep.curve_lr", "expected null or a finite number > 0, got 'inf'"),
    ("suggestion-schedule", "plain", _set("suggestions", "steep", "for_schedule", "cosine"),
     "suggestions.steep.for_schedule", "expected one of 'one_cycle', 'constant', 'curve'"),
    ("suggestion-unknown-key", "plain", _set("suggestions", "steep", "note", 1),
     "suggestions.steep.note", "unexpected field 'note'"),
    ("method-without-suggestion", "plain", _drop("suggestions", "minimum"),
     "suggestions.minimum", "missing: the settings' method 'minimum' has a suggestion"),
    ("planned-points-0", "plain", _set("planned_points", 0), "planned_points",
     "expected an integer >= 1, got 0"),
    ("stop-reason-a-list", "plain", _set("stop_reason", ["diverged"]), "stop_reason",
     "expected a string, got a list of 1 item"),
    ("NaN-token", "plain", _text(lambda doc: json.dumps(doc).replace('"nan"', "NaN", 1)
                                 .replace('"meta": {', '"meta": {"x": NaN, ')), "",
     "not standard JSON (non-standard JSON constant NaN)"),
    ("meta-1e999", "plain", _text(lambda doc: json.dumps(doc).replace('"meta": {',
                                                                      '"meta": {"x": 1e999, ')),
     "meta.x", "expected a finite number (JSON has no NaN or infinity), got inf"),
    ("meta-a-list", "plain", _set("meta", [1]), "meta", "expected an object, got a list"),
    ("int-of-5000-digits", "plain", _text(lambda doc: json.dumps(doc).replace(
        '"meta": {', '"meta": {"x": ' + "9" * 5000 + ", ")), "", "not standard JSON"),
    ("format-other", "plain", _set("format", "other"), "format",
     "not an lrfind result (format='other'); expected 'lrfind-result'"),
    ("format-missing", "plain", _drop("format"), "format", "not an lrfind result (format=null)"),
    ("version-99", "plain", _set("version", 99), "version",
     "unsupported lrfind result version 99; this lrfind reads versions 1, 2, 3"),
    ("version-true", "plain", _set("version", True), "version",
     "unsupported lrfind result version true"),
    ("version-a-string", "plain", _set("version", "3"), "version",
     "unsupported lrfind result version '3'"),
    ("unknown-top-level-key", "plain", _set("extra", 1), "extra", "unexpected field 'extra'"),
    ("settings-start-lr", "plain", _set("settings", "start_lr", -1), "settings.start_lr",
     "start_lr must be a finite number > 0"),
    ("settings-huge-int", "plain", _set("settings", "num_steps", 10**400), "settings.num_steps",
     "expected an integer of at most 64 bits"),
    ("settings-unknown-key", "plain", _set("settings", "smoothing", 0.9), "settings.smoothing",
     "unexpected field 'smoothing'; expected only Settings fields"),
    ("settings-methods-a-string", "plain", _set("settings", "methods", "valley"),
     "settings.methods", "expected a list of method names, got 'valley'"),
    ("settings-a-list", "plain", _set("settings", []), "settings",
     "expected an object of settings, got a list of 0 items"),
    ("settings-unknown-mode", "plain", _set("settings", "mode", "grid"), "settings",
     "unknown mode 'grid'"),
    ("old-config-without-default-method",
     "plain", _text(lambda doc: json.dumps(_old_document(doc, 2)).replace('"default_method"',
                                                                           '"x"')),
     "config.x", "unexpected field 'x'"),
    ("old-config-missing-default-method", "plain",
     _text(lambda doc: (lambda old: (old["config"].pop("default_method"), json.dumps(old))[1])(
         _old_document(doc, 1))),
     "config.default_method", "missing: this field is required"),
    ("band-too-short", "ensemble",
     lambda doc: (doc["ensemble"]["band_low"].pop(), doc["ensemble"]["band_high"].pop()),
     "ensemble.band_low", "expected 37 values (one per point of the curve), got 36"),
    ("band-high-too-short", "ensemble", lambda doc: doc["ensemble"]["band_high"].pop(),
     "ensemble.band_high", "expected 37 values (as many as band_low), got 36"),
    ("ragged-sweeps", "ensemble", lambda doc: doc["ensemble"]["sweep_losses"][1].pop(),
     "ensemble.sweep_losses[1]", "expected 40 values"),
    ("sweeps-shorter-than-the-curve", "ensemble",
     lambda doc: doc["ensemble"].update(sweep_losses=[r[:10] for r in
                                                      doc["ensemble"]["sweep_losses"]],
                                        sweep_smoothed=[r[:10] for r in
                                                        doc["ensemble"]["sweep_smoothed"]],
                                        band_low=[], band_high=[]),
     "ensemble.stop_steps[0]", "expected null or an integer from 0 to 9"),
    ("sweep-stop-beyond", "ensemble", _set("ensemble", "stop_steps", 0, 40),
     "ensemble.stop_steps[0]", "expected null or an integer from 0 to 39, got 40"),
    ("two-stop-steps-for-three-sweeps", "ensemble",
     lambda doc: doc["ensemble"]["stop_steps"].pop(), "ensemble.stop_steps",
     "expected a list of 3 stop steps, got a list of 2 items"),
    ("sweep-suggestion-negative", "ensemble",
     _set("ensemble", "sweep_suggestions", "valley", 1, -0.5),
     "ensemble.sweep_suggestions.valley[1]", "expected null or a finite number > 0, got -0.5"),
    ("sweep-suggestions-missing-a-method", "ensemble",
     _drop("ensemble", "sweep_suggestions", "steep"), "ensemble.sweep_suggestions.steep",
     "missing: every method of suggestions but the search's has the sweeps' LRs"),
    ("no-sweeps", "ensemble",
     lambda doc: doc["ensemble"].update(sweep_losses=[], sweep_smoothed=[]),
     "ensemble.sweep_losses", "expected at least 1 lists of numbers, got 0"),
    ("ragged-runs", "runs", lambda doc: doc["runs"]["run_losses"][0][1].pop(),
     "runs.run_losses[0][1]", "expected 3 values"),
    ("runs-made-beyond-the-grid", "runs", _set("runs", "made", 0, 7), "runs.made[0]",
     "expected an integer from 0 to 6, got 7"),
    ("runs-average-last-0", "runs", _set("runs", "average_last", 0), "runs.average_last",
     "expected an integer >= 1, got 0"),
    ("runs-grid-shorter-than-the-curve", "runs",
     lambda doc: doc["runs"].update(run_losses=[c[:2] for c in doc["runs"]["run_losses"]],
                                    made=[2, 2]),
     "runs.run_losses", "expected at least 5 runs per curve (the curve's points), got 2"),
    ("runs-and-sweeps-disagree", "runs",
     lambda doc: doc["runs"].update(run_losses=[[*c, [1.0, 1.0, 1.0]]
                                                for c in doc["runs"]["run_losses"]]),
     "ensemble.sweep_losses", "expected curves of 7 points (the runs' grid), got 6"),
    ("search-horizons-short", "search", lambda doc: doc["search"]["horizons"].pop(),
     "search.horizons", "expected 14 values, got 13"),
    ("search-horizon-0", "search", _set("search", "horizons", 0, 0), "search.horizons[0]",
     "expected an integer >= 1, got 0"),
    ("search-near-best-reversed", "search",
     lambda doc: doc["search"].update(near_best=doc["search"]["near_best"][::-1]),
     "search.near_best[1]", "expected an LR >= the low end"),
    ("search-schedule", "search", _set("search", "schedule", "curve"), "search.schedule",
     "expected one of 'one_cycle', 'constant', got 'curve'"),
    ("search-tolerance-nan", "search", _set("search", "tolerance", "nan"), "search.tolerance",
     "expected a finite number >= 0, got 'nan'"),
    ("search-suggestion-missing", "search", _drop("suggestions", "search"),
     "suggestions.search", "missing: a result with a search has its suggestion"),
    ("search-suggestion-elsewhere", "search", _set("suggestions", "search", "lr", 0.5),
     "suggestions.search.lr", "expected the search's LR"),
    ("search-a-string", "search", _set("search", "yes"), "search",
     "expected an object, got 'yes'"),
    ("search-no-candidates", "search",
     lambda doc: doc["search"].update(lrs=[], horizons=[], rungs=[], scores=[]),
     "search.lrs", "expected at least one candidate LR"),
]


def bad_file(tmp_path, kind, make) -> str:
    doc = document(kind)
    made = make(doc)
    text = made if getattr(make, "is_text", False) else json.dumps(doc, indent=1)
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("kind", "make", "field", "wanted"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_is_one_value_error_naming_the_file_the_field_and_what_was_expected(
    tmp_path, kind, make, field, wanted
):
    path = bad_file(tmp_path, kind, make)
    with pytest.raises(ValueError) as raised:
        LRFindResult.load(path)
    assert type(raised.value) is ValueError
    message = assert_one_clean_error(raised.value, path)
    assert f": {field}: " in message if field else True, message
    assert wanted in message, message


@pytest.mark.parametrize(("kind", "make"), [case[1:3] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_lrfind_show_says_in_one_line_what_is_wrong_with_a_bad_file(tmp_path, capsys, kind,
                                                                     make):
    path = bad_file(tmp_path, kind, make)
    assert main(["show", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"lrfind show: {path}: ")


def test_a_pickle_renamed_json_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "pickle.json"
    path.write_bytes(pickle.dumps(valid_results()["plain"]))
    with pytest.raises(ValueError) as raised:
        LRFindResult.load(path)
    message = assert_one_clean_error(raised.value, str(path))
    assert "not an lrfind result file: not UTF-8 text (byte 0x80 at offset 0" in message
    assert "expected the JSON text that LRFindResult.save writes" in message
    assert main(["show", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lrfind show: {path}: not an lrfind")


def test_a_truncated_file_is_called_truncated(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(document())[:-1])
    with pytest.raises(ValueError, match="the text ends early: is the file truncated"):
        LRFindResult.load(path)


def test_2_million_points_with_30_smoothed_losses(tmp_path):
    doc = document()
    points = 2_000_000
    doc["lrs"] = list(range(1, points + 1))
    doc["losses"] = [0] * points
    doc["smoothed_losses"] = doc["smoothed_losses"][:30]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(doc, separators=(",", ":")))
    with pytest.raises(ValueError) as raised:
        LRFindResult.load(path)
    message = assert_one_clean_error(raised.value, str(path))
    assert ": smoothed_losses: expected 2000000 values (as many as lrs), got 30" in message


def test_a_curve_beyond_the_size_bound_is_refused_before_it_is_read():
    doc = document()
    doc["lrs"] = [1.0] * (MAX_POINTS + 1)
    with pytest.raises(ValueError, match=f"result: invalid lrfind result: lrs: expected at "
                                         f"most {MAX_POINTS} values, got {MAX_POINTS + 1}"):
        LRFindResult.from_dict(doc)


def test_a_file_beyond_the_size_bound_is_refused_unread(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.json"
    valid_results()["plain"].save(path)
    monkeypatch.setattr(result_file, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ValueError) as raised:
        LRFindResult.load(path)
    message = assert_one_clean_error(raised.value, str(path))
    assert "bytes, larger than the 0 MiB a result file may have" in message
    assert main(["show", str(path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_missing_files_and_folders_are_os_errors_and_one_line_in_the_cli(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        LRFindResult.load(tmp_path / "none.json")
    for path in (tmp_path / "none.json", tmp_path):
        assert main(["show", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lrfind show: ")


def test_lrfind_show_reports_a_plot_it_cannot_write_in_one_line(tmp_path, capsys):
    path = tmp_path / "result.json"
    valid_results()["plain"].save(path)
    assert main(["show", str(path), "--plot", str(tmp_path / "no" / "such" / "p.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lrfind show: ")


def test_meta_may_nest_100_levels_and_no_more(tmp_path):
    def nested(levels):  # meta itself is level 1
        return {"deep": functools.reduce(lambda inner, _: [inner], range(levels - 2), [])}

    path = tmp_path / "deep.json"
    deepest = LRFindResult.from_curve(LRS, bowl(), meta=nested(100))
    deepest.save(path)
    assert LRFindResult.load(path) == deepest
    doc = deepest.to_dict()
    doc["meta"] = nested(101)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"meta\.deep: nested deeper than 100 levels"):
        LRFindResult.load(path)
    with pytest.raises(ValueError, match=r"meta\.deep: nested deeper than 100 levels"):
        LRFindResult.from_curve(LRS, bowl(), meta=nested(101)).save(path)


def test_a_utf8_bom_is_allowed(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(document()).encode())
    assert LRFindResult.load(path) == valid_results()["plain"]


def test_from_dict_names_the_result_and_refuses_python_objects():
    doc = document()
    doc["meta"]["shape"] = (2, 3)
    with pytest.raises(ValueError, match=r"^result: invalid lrfind result: meta\.shape: "
                                         r"expected a list, got a tuple"):
        LRFindResult.from_dict(doc)
    for bad in (None, [], "text", 3):
        with pytest.raises(ValueError, match=r"^result: invalid lrfind result: expected a JSON "
                                             r"object"):
            LRFindResult.from_dict(bad)


def test_the_records_check_their_own_documents():
    ensemble = valid_results()["ensemble"].ensemble
    assert SweepEnsemble.from_dict(ensemble.to_dict()) == ensemble
    with pytest.raises(ValueError, match=r"^ensemble\.band_high: expected 37 values \(as many "
                                         r"as band_low\), got 0"):
        SweepEnsemble.from_dict({**ensemble.to_dict(), "band_high": []})
    runs = valid_results()["runs"].runs
    assert IndependentRuns.from_dict(runs.to_dict()) == runs
    with pytest.raises(ValueError, match=r"^runs\.run_losses: expected a non-empty list"):
        IndependentRuns.from_dict({**runs.to_dict(), "run_losses": []})
    search = valid_results()["search"].search
    assert SearchRecord.from_dict(search.to_dict()) == search
    with pytest.raises(ValueError, match=r"^search\.lr: expected null or a finite number > 0"):
        SearchRecord.from_dict({**search.to_dict(), "lr": 0})


def test_old_independent_configs_still_give_their_grid_size():
    result = valid_results()["runs"]
    old = _old_document(document("runs"), 2)
    old["config"]["num_steps"] = old["config"].pop("independent_lrs", 6)
    assert LRFindResult.from_dict(old) == result
    del old["config"]["num_steps"]
    with pytest.raises(ValueError, match=r"config\.num_steps: missing: an independent-mode "
                                         r"config of version 1 or 2 gives its grid size here"):
        LRFindResult.from_dict(old)


# --- saving: atomic, and only what loads back ---------------------------------------------


def _folder(path) -> list[str]:
    return sorted(os.listdir(path))


@pytest.mark.parametrize(
    ("meta", "error", "wanted"),
    [
        ({"shape": (2, 3)}, TypeError,
         "meta.shape: expected a list, got a tuple: JSON has no tuples"),
        ({"a": {"b": [1, (2,)]}}, TypeError, "meta.a.b[1]: expected a list, got a tuple"),
        ({"loss": float("nan")}, ValueError,
         "meta.loss: expected a finite number (JSON has no NaN or infinity), got nan"),
        ({"t": [np.float32("inf")]}, ValueError, "meta.t[0]: expected a finite number"),
        ({"array": np.zeros(3)}, TypeError, "meta.array: expected JSON data"),
        ({"when": np.datetime64("2024-01-01")}, TypeError,
         "meta.when: expected JSON data (an object with string keys, a list, a string, a "
         "finite number, a bool or null), got a numpy datetime64"),
        ({"set": {1, 2}}, TypeError, "meta.set: expected JSON data"),
        ({"by step": {3: "x"}}, TypeError,
         "meta['by step']: expected string keys (JSON has no other), got the key 3 (int)"),
        ({"deep": functools.reduce(lambda inner, _: [inner], range(120), [])}, ValueError,
         "nested deeper than 100 levels"),
        ({"big": 10**5000}, ValueError, "meta.big: expected an integer of at most 13000 bits"),
    ],
    ids=["tuple", "nested-tuple", "nan", "numpy-inf", "array", "datetime", "set", "int-key",
         "deep", "huge-int"],
)
def test_a_refused_save_names_the_key_and_leaves_the_old_file_intact(tmp_path, meta, error,
                                                                     wanted):
    path = tmp_path / "result.json"
    valid_results()["plain"].save(path)
    before = path.read_bytes()
    result = LRFindResult.from_curve(LRS, bowl(), meta=meta)
    with pytest.raises(error) as raised:
        result.save(path)
    assert type(raised.value) is error
    assert str(raised.value).startswith(f"cannot save {path}: ")
    assert wanted in str(raised.value)
    assert path.read_bytes() == before
    assert _folder(tmp_path) == ["result.json"]
    assert LRFindResult.load(path) == valid_results()["plain"]


def test_numpy_scalars_in_meta_are_saved_as_the_numbers_they_equal(tmp_path):
    meta = {"f32": np.float32(1.5), "tenth": np.float32(0.1), "f64": np.float64(0.1),
            "i64": np.int64(-3), "u8": np.uint8(200), "flag": np.bool_(True),
            "name": np.str_("cpu"), "list": [np.float16(2.5), {"n": np.int32(7)}]}
    result = LRFindResult.from_curve(LRS, bowl(), meta=meta)
    path = tmp_path / "numpy.json"
    valid_results()["search"].save(path)  # np.float32(1.5) once truncated the file it replaced
    result.save(path)
    assert _folder(tmp_path) == ["numpy.json"]
    loaded = LRFindResult.load(path)
    assert loaded == result
    assert loaded.meta == {"f32": 1.5, "tenth": float(np.float32(0.1)), "f64": 0.1, "i64": -3,
                           "u8": 200, "flag": True, "name": "cpu",
                           "list": [2.5, {"n": 7}]}
    assert type(loaded.meta["f32"]) is float and type(loaded.meta["i64"]) is int
    assert type(loaded.meta["flag"]) is bool
    assert LRFindResult.from_dict(result.to_dict()) == result


def test_plain_meta_round_trips_exactly(tmp_path):
    meta = {"s": "é\u2028\ud800", "i": 2**70, "f": 5e-324, "n": None, "b": False,
            "nested": [[{"x": [1.5, -0.0]}]], "": {}, "with.dot": [], "emoji": "🙂"}
    result = LRFindResult.from_curve(LRS, bowl(), meta=meta)
    path = tmp_path / "meta.json"
    result.save(path)
    assert LRFindResult.load(path) == result
    assert LRFindResult.load(path).meta == meta


def test_saving_over_a_good_file_with_a_bad_result_keeps_the_good_file(tmp_path):
    path = tmp_path / "result.json"
    valid_results()["plain"].save(path)
    before = path.read_bytes()
    good = valid_results()["plain"]
    broken = LRFindResult(
        lrs=good.lrs[::-1].copy(), losses=good.losses, smoothed_losses=good.smoothed_losses,
        stop_step=good.stop_step, stop_reason=good.stop_reason, suggestions=good.suggestions,
        settings=good.settings, planned_points=good.planned_points,
    )
    with pytest.raises(ValueError, match=rf"^cannot save {path}: not a valid lrfind result: "
                                         r"lrs\[1\]: expected a value greater than"):
        broken.save(path)
    assert path.read_bytes() == before
    assert _folder(tmp_path) == ["result.json"]


def test_a_save_that_fails_while_writing_leaves_the_old_file_and_no_temporary(tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "result.json"
    valid_results()["plain"].save(path)
    before = path.read_bytes()

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result_file.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        valid_results()["search"].save(path)
    monkeypatch.undo()
    monkeypatch.setattr(result_file.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        valid_results()["search"].save(path)
    assert path.read_bytes() == before
    assert _folder(tmp_path) == ["result.json"]


def test_a_save_replaces_the_file_whole_with_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "result.json"
    valid_results()["search"].save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    path.chmod(0o640)
    valid_results()["plain"].save(path)  # replaced, keeping the file's mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert LRFindResult.load(path) == valid_results()["plain"]
    assert _folder(tmp_path) == ["result.json"]
    assert json.loads(path.read_text(encoding="utf-8"))["format"] == "lrfind-result"


# --- property-based: mutated documents load validly or raise ValueError -------------------

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**63, -(2**63) - 1, 10**30, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 1e-320, 0.0, -0.0, 0.5, 3.0]),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "Infinity", "abc", "", "valley", "one_cycle",
                     "minimum", "search", "lrfind-result", "0.1"]),
    st.text(max_size=6),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.lists(st.sampled_from(["nan", 1.0, None]), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=-2, max_value=2), max_size=2),
    st.just([[[]]]),
)


def locations(node, path=()):
    """Every place in a document; of a long list, its first, second, middle and last items."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from locations(value, (*path, key))
    elif isinstance(node, list):
        picked = range(len(node)) if len(node) <= 4 else sorted(
            {0, 1, len(node) // 2, len(node) - 1})
        for index in picked:
            yield from locations(node[index], (*path, index))


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw, kind):
    """A valid document of ``kind`` with 1 to 3 mutations."""
    doc = document(kind)

    def odd():  # a copy: drawn lists and dicts may be shared between examples
        return copy.deepcopy(draw(ODD_VALUES))

    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = [*list(locations(doc))[1:], ()]  # the whole document last: rarely drawn
        path = draw(st.sampled_from(places))
        node = _at(doc, path)
        operations = ["retype", "retype-item"] + (["drop"] if path else [])
        if isinstance(node, list):
            operations += ["reverse", "truncate", "extend", "shuffle", "duplicate", "inject"]
        if isinstance(node, dict):
            operations += ["add-key", "drop-all"]
        operation = draw(st.sampled_from(operations))
        if operation == "drop":
            del _at(doc, path[:-1])[path[-1]]
        elif operation in ("retype", "retype-item"):
            value = odd()
            if path:
                _at(doc, path[:-1])[path[-1]] = value
            else:
                doc = value
                break
        elif operation == "reverse":
            node.reverse()
        elif operation == "truncate":
            del node[draw(st.integers(min_value=0, max_value=len(node))):]
        elif operation == "extend":
            node.append(copy.deepcopy(node[-1]) if node and draw(st.booleans())
                        else odd())
        elif operation == "shuffle":
            node[:] = draw(st.permutations(node))
        elif operation == "duplicate" and node:
            at = draw(st.integers(min_value=0, max_value=len(node) - 1))
            node.insert(at, copy.deepcopy(node[at]))
        elif operation == "inject" and node:
            at = draw(st.integers(min_value=0, max_value=len(node) - 1))
            node[at] = copy.deepcopy(draw(st.sampled_from(
                ["nan", "inf", "-inf", "NaN", "abc", 1e308, -1e308, 0, -1, 1e-320, 10**30,
                 2**63, 10**400, True, None, float("nan"), float("inf"), [1.0], {}])))
        elif operation == "add-key":
            node[draw(st.sampled_from(["extra", "lr", "made", "meta", "x" * 3]))] = draw(
                ODD_VALUES)
        elif operation == "drop-all":
            node.clear()
    return doc


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("result_files")


def check_document(doc, scratch) -> None:
    """A document loads to a valid result or raises ValueError, from data and from a file."""
    try:
        loaded = LRFindResult.from_dict(doc)
    except ValueError as error:
        assert_one_clean_error(error, "result")
    else:
        assert_round_trip(loaded, scratch / "again.json")
    path = scratch / "mutated.json"
    path.write_text(json.dumps(doc), encoding="utf-8")  # NaN and Infinity as JSON tokens
    try:
        loaded = LRFindResult.load(path)
    except ValueError as error:
        assert_one_clean_error(error, str(path))
    else:
        assert_round_trip(loaded, scratch / "again.json")


PROPERTY = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("kind", ["plain", "ensemble", "runs", "search"])
def test_mutated_documents_load_validly_or_raise_value_error(kind, scratch):
    @PROPERTY
    @given(mutated(kind))
    def check(doc):
        check_document(doc, scratch)

    check()


@pytest.mark.parametrize("kind", ["plain", "ensemble", "runs", "search"])
def test_truncated_and_corrupted_files_raise_value_error(kind, scratch):
    text = json.dumps(valid_results()[kind].to_dict(), indent=1).encode()

    @settings(max_examples=25, deadline=None, database=None)
    @given(st.integers(min_value=0, max_value=len(text) - 1),
           st.integers(min_value=0, max_value=255), st.booleans())
    def check(at, byte, truncate):
        data = text[:at] if truncate else text[:at] + bytes([byte]) + text[at + 1:]
        path = scratch / "corrupt.json"
        path.write_bytes(data)
        try:
            loaded = LRFindResult.load(path)
        except ValueError as error:
            assert_one_clean_error(error, str(path))
        else:
            assert not truncate
            assert_round_trip(loaded, scratch / "again.json")

    check()
