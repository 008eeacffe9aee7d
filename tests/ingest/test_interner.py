"""``Interner.intern_many`` gives exactly the codes one ``intern`` per name would, in every case
its bulk path takes (new names all at once, repeats, known names, ids to normalise)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from affinity_sdk.ingest.interner import Interner

# A small alphabet so lists repeat names; "e\u0301" and "\u00e9" are one id in NFC.
_NAMES = st.lists(st.sampled_from(["a", "b", "", "caf\u00e9", "cafe\u0301", "x" * 20, "\u00c5", "A\u030a"]))


@given(known=_NAMES, batch=_NAMES, form=st.sampled_from(["NFC", None]))
def test_intern_many_equals_one_intern_per_name(known: list[str], batch: list[str], form: str | None) -> None:
    bulk, one = Interner(normalize=form), Interner(normalize=form)  # type: ignore[arg-type]
    for names in (bulk, one):
        for name in known:
            names.intern(name)
    codes = bulk.intern_many(batch)
    assert codes.tolist() == [one.intern(name) for name in batch]
    assert bulk.names == one.names
    assert [bulk.lookup(name) for name in batch] == [one.lookup(name) for name in batch]


def test_a_batch_of_new_distinct_names_takes_the_next_codes() -> None:
    names = Interner(["a"])
    assert names.intern_many(["b", "c", "d"]).tolist() == [1, 2, 3]
    assert names.intern_many(["e", "e", "a"]).tolist() == [4, 4, 0]
    assert names.names == ("a", "b", "c", "d", "e")
