import json

import pytest
from tinymodels import DATA

from museforge.config import DataConfig
from museforge.data import DataError, load_documents, pack, split_documents
from museforge.tasks import get_task


def test_txt_with_separators_keeps_songs_whole():
    docs = load_documents(DATA / "lyrics.txt")
    assert len(docs) == 6  # six songs separated by ---, stanzas kept inside each
    assert all("[Verse 1]" in t and "\n\n" in t for t in docs["text"])


def test_txt_blank_line_documents():
    docs = load_documents(DATA / "stories.txt")
    assert len(docs) == 6
    assert docs["text"][0].startswith("Once there was a lighthouse keeper")


def test_folder_is_one_document_per_file(tmp_path):
    for i in range(3):
        (tmp_path / f"song{i}.txt").write_text(f"first stanza number {i}\nline two\n\nsecond stanza here\n")
    docs = load_documents(tmp_path)
    assert len(docs) == 3 and all("second stanza" in t for t in docs["text"])


def test_jsonl_with_list_field_title_and_style(tmp_path):
    f = tmp_path / "h.jsonl"
    rows = [{"title": "Dawn", "verses": ["light on the hill", "birds in the air"], "kind": "hymn"},
            {"title": "Dusk", "verses": ["shadows grow long", "the day is done now"], "kind": "hymn"}]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    docs = load_documents(f, text_field="verses", style_field="kind")
    assert docs[0] == {"text": "light on the hill\n\nbirds in the air", "title": "Dawn", "style": "hymn"}


def test_csv(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text('text,style\n"one two three four",rap\n"five six seven eight",ballad\n')
    docs = load_documents(f)
    assert docs["style"] == ["rap", "ballad"]


@pytest.mark.parametrize("make,needle", [
    (lambda p: p.write_text(""), "file is empty"),
    (lambda p: p.write_text("\n\n  \n\nok\n"), "no usable text"),
    (lambda p: p.write_bytes(b"good line here\n\xff\xfe bad"), "not UTF-8 text (bad byte at line 2)"),
])
def test_bad_text_files_name_the_problem(tmp_path, make, needle):
    f = tmp_path / "bad.txt"
    make(f)
    with pytest.raises(DataError) as e:
        load_documents(f)
    assert needle in str(e.value) and "bad.txt" in str(e.value)


def test_wrong_field_lists_fields(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"lyrics": "a b c d"}\n')
    with pytest.raises(DataError, match="no field 'text' \\(fields: lyrics\\); set data.text_field"):
        load_documents(f)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_documents(tmp_path / "nope.txt")
    (tmp_path / "a.pdf").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.pdf'"):
        load_documents(tmp_path / "a.pdf")


def test_split_is_seeded_and_disjoint():
    docs = load_documents(DATA / "poems.txt")
    a_train, a_val = split_documents(docs, 0.34, seed=1)
    b_train, b_val = split_documents(docs, 0.34, seed=1)
    assert a_val["text"] == b_val["text"] and len(a_val) == 2
    assert not set(a_train["text"]) & set(a_val["text"])


def test_pack_keeps_document_boundaries():
    blocks = pack([[1, 2, 9], [3, 4, 5, 9]], block_size=4, pad_id=0)
    assert blocks[0] == {"input_ids": [1, 2, 9, 3], "doc_ids": [0, 0, 0, 1]}
    assert blocks[1] == {"input_ids": [4, 5, 9, 0], "doc_ids": [1, 1, 1, -1]}


def test_each_document_ends_with_eos(tokenizer):
    train, val, info = get_task("poem").build_datasets(DataConfig(path=str(DATA / "poems.txt"), val_fraction=0.2), tokenizer)
    assert info["documents"] == {"train": 5, "validation": 1}
    assert all(d[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in d[:-1] for d in train + val)
