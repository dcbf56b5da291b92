"""write_report: files produced, well formed, honest verdicts, nothing half-written."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sae_causal_plugin.graph import ConceptGraph
from sae_causal_plugin.report import REPORT_FILES, write_report
from sae_causal_plugin.worlds.run import SteeringExample


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.cells, self.open = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        if tag not in ("img", "meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        if data.strip():
            self.cells.append(data.strip())


def parse(path):
    parser = _Collect()
    parser.feed(path.read_text())
    assert parser.open == [], f"unclosed tags {parser.open}"
    return parser


def test_report_files_are_complete_and_well_formed(tiny_run, tmp_path):
    index = write_report(tiny_run, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    for name in REPORT_FILES:
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["edge_f1"] == 0.75 and metrics["n_tokens"] == 4096
    assert ConceptGraph.load_json(tmp_path / "report" / "concept_graph.json") == tiny_run.learned_graph
    assert (tmp_path / "report" / "concept_graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = parse(index)
    assert "table" in page.tags and "concept_graph.png" in page.imgs and "true_graph.png" in page.imgs
    for src in page.imgs:
        assert (tmp_path / "report" / src).is_file()
    text = " ".join(page.cells)
    assert "I saw a <dog>" in text and "I saw a <rose>" in text  # escaped, shown as text
    assert "<dog>" not in index.read_text()


def test_metrics_table_says_which_targets_are_met(tiny_run, tmp_path):
    page = (write_report(tiny_run, tmp_path / "r")).read_text()
    rows = {line.split("</code>")[0].split("<code>")[-1]: line
            for line in page.splitlines() if line.startswith("<tr><td><code>")}
    assert "class='met'>yes" in rows["steer_mass_ratio"]  # 6.5 >= 5
    assert "class='missed'>no" in rows["edge_f1"]  # 0.75 < 0.85
    assert "class='missed'>no" in rows["ablation_mass_fraction"]  # 20% is not < 10%
    assert "4.0%" in rows["ppl_increase"]
    assert "per_category" not in rows  # nested figures get their own table
    assert "<h3><code>per_category</code></h3>" in page and "<td>plant</td><td>5.6</td><td>1</td>" in page


def test_edge_comparison_by_label(tiny_run, tmp_path):
    page = write_report(tiny_run, tmp_path / "r").read_text()
    assert "recovered and true (3)" in page
    assert "recovered, not in the true graph (1)" in page and "puppy &rarr; dog" in page
    assert "true, not recovered (1)" in page and "rose &rarr; plant" in page


def test_image_examples_are_copied_and_existing_files_kept(tiny_run, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    from PIL import Image

    Image.new("RGB", (4, 4), "red").save(out / "b.png")
    Image.new("RGB", (4, 4), "blue").save(tmp_path / "a.png")
    tiny_run.steering_examples = [SteeringExample("img", Path("b.png"), tmp_path / "a.png")]
    index = write_report(tiny_run, out)
    page = parse(index)
    assert {"steering/0_before.png", "steering/0_after.png"} <= set(page.imgs)
    assert (out / "steering/0_after.png").read_bytes() == (tmp_path / "a.png").read_bytes()
    assert (out / "keep.txt").read_text() == "user file"
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


@pytest.mark.parametrize("break_run, message", [
    (lambda run: run.metrics.update(bad=object()), "metrics\\['bad'\\]"),
    (lambda run: setattr(run, "true_graph", {}), "true_graph must be a ConceptGraph"),
    (lambda run: run.steering_examples.append(SteeringExample("x", Path("missing.png"), Path("m.png"))),
     "does not exist"),
    (lambda run: run.steering_examples.append(SteeringExample("x", "text", Path("m.png"))), "both"),
    (lambda run: run.figures.append(("caption", "not-a-path.png")), "figures\\[0\\] must be a \\(caption, Path\\)"),
    (lambda run: run.figures.append(("caption", Path("missing.png"))), "does not exist"),
])
def test_bad_run_leaves_previous_report_untouched(tiny_run, tmp_path, break_run, message):
    out = tmp_path / "r"
    write_report(tiny_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    break_run(tiny_run)
    with pytest.raises(ValueError, match=message):
        write_report(tiny_run, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_out_dir_that_is_a_file_is_refused(tiny_run, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_report(tiny_run, tmp_path / "f")


def test_matched_graphs_are_compared_by_concept_attribute(tiny_run, tmp_path):
    learned = tiny_run.learned_graph
    for node, concept in {0: "animal", 1: "plant", 3: "dog", 4: "cat", 5: "oak"}.items():
        learned.add_concept(node, label=f"{concept} (#{node})", concept=concept)
    learned.add_concept(6, label="6")  # matched to no concept
    page = write_report(tiny_run, tmp_path / "r").read_text()
    assert "recovered and true (3)" in page and "cat &rarr; animal" in page
    assert "recovered, not in the true graph (0)" in page
    assert "touching a latent matched to no concept (1)" in page


def test_sae_folders_inside_the_report_are_linked_relatively_and_rights_are_normal(tiny_run, tmp_path):
    import os
    import stat

    out = tmp_path / "r"
    (out / "saes" / "layer").mkdir(parents=True)
    tiny_run.sae_dirs = {"blocks.0.hook_resid_post": out / "saes" / "layer", "elsewhere": tmp_path / "x"}
    page = write_report(tiny_run, out).read_text()
    assert "href='saes/layer'" in page and str(tmp_path / "x") in page
    fresh = write_report(tiny_run, tmp_path / "fresh").parent
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o777 & ~umask


def test_picture_leaves_out_isolated_unmatched_latents():
    from sae_causal_plugin.report.writer import drawn_part

    graph = ConceptGraph()
    graph.add_edge(1, 0)
    graph.add_concept(2, concept="bird")
    graph.add_concept(3)
    assert drawn_part(graph) == [1, 0, 2]
    lonely = ConceptGraph()
    lonely.add_concept(5)
    assert drawn_part(lonely) == [5]


def test_settings_apart_descriptions_command_and_no_repr(tiny_run, tmp_path):
    from tests.helpers import assert_report_is_readable, report_tables

    del tiny_run.metrics["n_tokens"]  # a made-up figure of the fixture, with no description
    tiny_run.steering_examples[0].succeeded = True
    tiny_run.metrics.update(seed=4, hook_name="blocks.1.hook_resid_mid", edge_precision=0.5,
                            config={"timesteps": [901, 101], "weights": None},
                            missing_edges=[["smoke", "chimney"], ["basket", "apples"]])
    page = write_report(tiny_run, tmp_path / "r", command="sae-causal demo --seed 4 --out r").read_text()
    assert_report_is_readable(page)
    tables = report_tables(page)
    assert tables["settings"]["seed"] == ["seed of the whole run", "4"]
    assert tables["settings"]["config.timesteps"][-1] == "901, 101"
    assert tables["settings"]["config.weights"][-1] == "n/a"
    assert "hook_name" not in tables["metrics"] and "edge_precision" in tables["metrics"]
    assert tables["metrics"]["edge_precision"][0].startswith("recovered edges that are true edges")
    assert "<pre>smoke -&gt; chimney, basket -&gt; apples</pre>" in page
    assert "Reproduce this report: <code>sae-causal demo --seed 4 --out r</code>" in page
    assert '<a href="true_graph.png"><img src="true_graph.png"' in page


def test_failed_and_working_examples_are_flagged(tiny_run, tmp_path):
    tiny_run.steering_examples[0].succeeded = False
    tiny_run.steering_examples.append(SteeringExample("steer toward plant", "a", "b", succeeded=True))
    tiny_run.steering_examples.append(SteeringExample("not judged", "a", "b"))
    page = write_report(tiny_run, tmp_path / "r").read_text()
    assert "<h3>steer toward animal <span class='missed'>(failed)</span></h3>" in page
    assert "<h3>steer toward plant <span class='met'>(worked)</span></h3>" in page
    assert "<h3>not judged</h3>" in page
