"""tests/docker/import_reach.py: the third-party imports a task reaches, read from source by definition."""

from __future__ import annotations

import textwrap

from .import_reach import ImportReach

FILES = {
    "pkg/__init__.py": """
        import topdep
        from pkg.helpers import used, unused  # a re-export: costs nothing until used
    """,
    "pkg/helpers.py": """
        from __future__ import annotations
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import typing_only
        else:
            import runtime_else

        def used():
            import used_dep
            return _private()

        def _private():
            from heavy.sub import thing
            return thing

        def unused():
            import never_dep

        class Store:
            def method(self):
                import method_dep
    """,
    "pkg/task.py": """
        import pkg.helpers as helpers
        from . import models
        from .helpers import Store
        from pkg import used as again

        DEFAULT = models.default_size()

        def entry():
            helpers.used()
            return Store()

        def other():
            import other_dep
    """,
    "pkg/models.py": """
        def default_size():
            import sized_dep
            return 1

        def big():
            import big_dep
    """,
    "ext/__init__.py": "",
    "ext/lib.py": """
        def f():
            import ext_dep
    """,
}


def _package(tmp_path):
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return ImportReach({"pkg": tmp_path / "pkg", "pkg.ext": tmp_path / "ext"})


def test_only_what_the_entry_runs_or_calls_is_reached(tmp_path):
    reach = _package(tmp_path).add("pkg.task", "entry")

    assert set(reach.third_party) == {
        "topdep",  # the parent package's module-level import
        "runtime_else",  # module level, outside TYPE_CHECKING
        "used_dep", "heavy.sub",  # helpers.used(), then the private function it calls
        "method_dep",  # Store is reached whole, every method
        "sized_dep",  # models.default_size() runs at import time (a module-level call)
    }
    assert reach.third_party["heavy.sub"] == {"pkg.helpers:_private"}
    assert reach.third_party["topdep"] == {"pkg:<module>"}


def test_a_re_exported_name_is_followed_to_its_definition(tmp_path):
    reach = _package(tmp_path)
    (tmp_path / "pkg" / "caller.py").write_text("from pkg import unused\n\ndef go():\n    unused()\n")

    reach.add("pkg.caller", "go")

    assert "never_dep" in reach.third_party and "used_dep" not in reach.third_party


def test_a_root_with_its_own_directory_and_dotted_attribute_access(tmp_path):
    reach = _package(tmp_path)
    (tmp_path / "pkg" / "dotted.py").write_text("import pkg.ext.lib\n\ndef go():\n    pkg.ext.lib.f()\n")

    reach.add("pkg.dotted", "go")

    assert reach.third_party["ext_dep"] == {"pkg.ext.lib:f"}
    assert "never_dep" not in reach.third_party and "other_dep" not in reach.third_party
