"""``workflow: ./child.yaml``: the file is read when the parent is loaded and embedded; a file
including itself (directly or not), a missing file and too deep a nesting are located problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.definitions import load_workflow_file, parse_workflow
from actors.definitions.mapping import definition_mapping
from events.errors import InvalidWorkflow


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def including(name: str, ref: str) -> str:
    return f"name: {name}\njobs:\n  first:\n    run: 'true'\n  sub:\n    workflow: {ref}\n"


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_file(path)
    return caught.value.problems


def test_a_child_file_relative_to_its_parent_is_embedded_and_the_result_is_self_contained(
    tmp_path: Path,
) -> None:
    parent = write(tmp_path, "parent.yaml", including("parent", "./nested/child.yaml"))
    write(tmp_path / "nested", "child.yaml", including("child", "../leaf.yaml"))
    write(tmp_path, "leaf.yaml", "name: leaf\njobs:\n  a:\n    run: 'true'\n")
    definition = load_workflow_file(parent)
    child = definition.workflows["./nested/child.yaml"]
    assert child.workflows["../leaf.yaml"].name == "leaf"
    # What a start request carries parses back to the same definition, with no file around.
    assert parse_workflow(definition_mapping(definition)) == definition


def test_a_file_including_itself_is_refused_at_its_job(tmp_path: Path) -> None:
    path = write(tmp_path, "self.yaml", including("self", "./self.yaml"))
    assert problems(path) == [
        f"{path}:6 jobs.sub.workflow: ./self.yaml includes itself: self.yaml -> self.yaml"
    ]


def test_an_indirect_recursion_is_refused_naming_the_whole_cycle(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", including("a", "b.yaml"))
    write(tmp_path, "b.yaml", including("b", "a.yaml"))
    [problem] = problems(a)
    assert problem.startswith(f"{a}:6 jobs.sub.workflow: in b.yaml: ")
    assert problem.endswith("jobs.sub.workflow: a.yaml includes itself: a.yaml -> b.yaml -> a.yaml")


def test_a_missing_child_file_and_a_childs_own_problems_are_located(tmp_path: Path) -> None:
    parent = write(tmp_path, "p.yaml", including("p", "gone.yaml"))
    [problem] = problems(parent)
    assert problem.startswith(f"{parent}:6 jobs.sub.workflow: in gone.yaml: ")
    assert "cannot read" in problem
    write(tmp_path, "bad.yaml", "name: bad\njobs:\n  x:\n    run: 'a'\n    needs: [nope]\n")
    parent = write(tmp_path, "q.yaml", including("q", "bad.yaml"))
    [problem] = problems(parent)
    assert problem.endswith("bad.yaml:5 jobs.x.needs[0]: unknown job 'nope'")


def test_nesting_beyond_five_levels_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "l6.yaml", "name: l6\njobs:\n  a:\n    run: 'true'\n")
    for level in range(5, -1, -1):
        write(tmp_path, f"l{level}.yaml", including(f"l{level}", f"l{level + 1}.yaml"))
    found = problems(tmp_path / "l0.yaml")
    assert len(found) == 1 and "nest more than 5 levels deep" in found[0]
    assert load_workflow_file(tmp_path / "l1.yaml").workflows  # five levels are fine
