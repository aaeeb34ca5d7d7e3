"""Tests for ptbfast.reader, including TF's own golden ``ptb_producer`` case."""

import os

import numpy as np
import pytest

from ptbfast import reader
from ptbfast.reader import DataError


def write(path, text, newline=""):
    """Write ``text`` exactly (no newline translation) and return the path."""
    path.write_bytes(text.replace("\n", newline or "\n").encode("utf-8"))
    return path


def make_dir(tmp_path, train, valid, test, pattern="ptb.{}.txt"):
    for split, text in zip(reader.SPLITS, (train, valid, test)):
        write(tmp_path / pattern.format(split), text)
    return tmp_path


# --- ptb_producer ------------------------------------------------------------------------------


def test_ptb_producer_golden_case_from_tf():
    raw = [4, 3, 2, 1, 0, 5, 6, 1, 1, 1, 1, 0, 3, 4, 1]
    batches = list(reader.ptb_producer(raw, batch_size=3, num_steps=2))
    assert len(batches) == reader.epoch_size(len(raw), 3, 2) == 2
    (x0, y0), (x1, y1) = batches
    np.testing.assert_array_equal(x0, [[4, 3], [5, 6], [1, 0]])
    np.testing.assert_array_equal(y0, [[3, 2], [6, 1], [0, 3]])
    np.testing.assert_array_equal(x1, [[2, 1], [1, 1], [3, 4]])
    np.testing.assert_array_equal(y1, [[1, 0], [1, 1], [4, 1]])
    for x, y in batches:
        assert x.dtype == y.dtype == np.int32
        assert x.flags.c_contiguous and y.flags.c_contiguous


def test_ptb_producer_rows_continue_across_batches():
    raw = np.arange(103)
    batches = list(reader.ptb_producer(raw, batch_size=4, num_steps=5))
    assert len(batches) == (103 // 4 - 1) // 5 == 4
    xs = np.concatenate([x for x, _ in batches], axis=1)
    ys = np.concatenate([y for _, y in batches], axis=1)
    rows = raw[: 4 * 25].reshape(4, 25)
    np.testing.assert_array_equal(xs, rows[:, :20])
    np.testing.assert_array_equal(ys, rows[:, 1:21])


def test_epoch_size_zero_raises_with_sizes():
    assert reader.epoch_size(8, 3, 2) == 0
    with pytest.raises(ValueError, match="decrease batch_size or num_steps") as err:
        reader.ptb_producer(np.arange(8), batch_size=3, num_steps=2)  # raises before next()
    assert "8 tokens" in str(err.value) and "batch_size=3" in str(err.value)
    assert "num_steps=2" in str(err.value)
    assert reader.epoch_size(0, 3, 2) == 0
    assert reader.epoch_size(9, 3, 2) == 1  # smallest length giving a batch: B * (T + 1)


def test_ptb_producer_rejects_bad_input():
    with pytest.raises(ValueError):
        reader.ptb_producer(np.zeros((4, 4), np.int32), 2, 2)
    with pytest.raises(ValueError):
        reader.ptb_producer(np.zeros(20, np.float32), 2, 2)
    with pytest.raises(ValueError):
        reader.epoch_size(20, 0, 2)
    for ids in (np.arange(20, dtype=np.int64) + 2**32, -np.arange(20), np.arange(20, dtype=np.uint64) + 2**63):
        with pytest.raises(ValueError, match=r"word ids in \[0, 2\*\*31\)"):  # (int32 would wrap 2**32 + i to i)
            reader.ptb_producer(ids, 2, 2)


# --- tokenisation and vocabulary ---------------------------------------------------------------


def test_vocab_by_descending_count_ties_by_ascending_word(tmp_path):
    path = write(tmp_path / "t.txt", " b a c b c d \n")
    # counts: b 2, c 2, <eos> 1, a 1, d 1; "<" < "a" in code point order, as in TF's sort.
    assert reader.build_vocab(path) == {"b": 0, "c": 1, "<eos>": 2, "a": 3, "d": 4}


def test_newlines_become_eos_and_no_trailing_newline_means_no_final_eos(tmp_path):
    vocab = {"a": 0, "b": 1, "<eos>": 2}
    with_nl = write(tmp_path / "with.txt", "a b\nb\n")
    without_nl = write(tmp_path / "without.txt", "a b\nb")
    np.testing.assert_array_equal(reader.file_to_word_ids(with_nl, vocab), [0, 1, 2, 1, 2])
    np.testing.assert_array_equal(reader.file_to_word_ids(without_nl, vocab), [0, 1, 2, 1])
    # Blank lines give one <eos> each; <eos> is its own word even without spaces around it.
    blank = write(tmp_path / "blank.txt", "a\n\nb\n")
    np.testing.assert_array_equal(reader.file_to_word_ids(blank, vocab), [0, 2, 2, 1, 2])


def test_crlf_reads_as_newline(tmp_path):
    unix = write(tmp_path / "unix.txt", " a b \n b \n")
    dos = write(tmp_path / "dos.txt", " a b \n b \n", newline="\r\n")
    assert dos.read_bytes().count(b"\r\n") == 2
    vocab = reader.build_vocab(unix)
    assert reader.build_vocab(dos) == vocab
    np.testing.assert_array_equal(
        reader.file_to_word_ids(dos, vocab), reader.file_to_word_ids(unix, vocab)
    )


def test_utf8_words_and_bom(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes("\ufeffcafé naïve café\n".encode("utf-8"))
    assert reader.build_vocab(path) == {"café": 0, "<eos>": 1, "naïve": 2}


def test_oov_words_dropped_from_valid_and_test(tmp_path):
    make_dir(tmp_path, " a b a \n", " a zz b \n", " qq \n a \n")
    with pytest.warns(UserWarning) as said:
        train, valid, test, vocab_size = reader.ptb_raw_data(tmp_path)
    assert sorted(str(w.message) for w in said) == [
        f"1 of the 4 words of {tmp_path / name} (25.00%) are not in the vocabulary and were dropped, as TF's reader does"
        for name in ("ptb.test.txt", "ptb.valid.txt")]
    assert vocab_size == 3  # a, <eos>, b
    np.testing.assert_array_equal(train, [0, 2, 0, 1])
    np.testing.assert_array_equal(valid, [0, 2, 1])
    np.testing.assert_array_equal(test, [1, 0, 1])
    for data in (train, valid, test):
        assert isinstance(data, np.ndarray) and data.dtype == np.int32


def test_load_corpus_keeps_vocabulary_and_paths(tmp_path):
    make_dir(tmp_path, " x y x \n", " y \n", " x \n")
    corpus = reader.load_corpus(str(tmp_path))
    assert corpus.id_to_word == ["x", "<eos>", "y"]
    assert corpus.word_to_id == {"x": 0, "<eos>": 1, "y": 2}
    assert corpus.vocab_size == 3
    assert corpus.paths == {s: tmp_path / f"ptb.{s}.txt" for s in reader.SPLITS}
    assert [corpus.id_to_word[i] for i in corpus.train] == ["x", "y", "x", "<eos>"]


@pytest.mark.parametrize("pattern", ["{}.txt", "wiki.{}.tokens"])
def test_wikitext_style_names(tmp_path, pattern):
    make_dir(tmp_path, " = t = \n a \n", " a \n", " = \n", pattern=pattern)
    corpus = reader.load_corpus(tmp_path)
    assert corpus.paths["valid"] == tmp_path / pattern.format("valid")
    assert corpus.vocab_size == 4  # <eos>, =, a, t
    assert corpus.valid.tolist() == [corpus.word_to_id["a"], corpus.word_to_id["<eos>"]]


def test_ptb_names_win_over_plain_names(tmp_path):
    make_dir(tmp_path, " p \n", " p \n", " p \n")
    make_dir(tmp_path, " q \n", " q \n", " q \n", pattern="{}.txt")
    assert reader.load_corpus(tmp_path).id_to_word == ["<eos>", "p"]


# --- errors ------------------------------------------------------------------------------------


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as err:
        reader.ptb_raw_data(missing)
    assert str(missing) in str(err.value)


def test_path_is_a_file_not_a_directory(tmp_path):
    path = write(tmp_path / "ptb.train.txt", " a \n")
    with pytest.raises(DataError, match="not a directory") as err:
        reader.load_corpus(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_directory_where_a_data_file_goes_is_named_as_such(tmp_path, split):
    for name in ("train", "valid", "test"):
        if name == split:
            (tmp_path / f"ptb.{name}.txt").mkdir()
        else:
            write(tmp_path / f"ptb.{name}.txt", " a \n")
    with pytest.raises(DataError, match=f"data file .*ptb.{split}.txt is a directory, not a file"):
        reader.load_corpus(tmp_path)


def test_missing_file(tmp_path):
    write(tmp_path / "ptb.train.txt", " a \n")
    write(tmp_path / "ptb.valid.txt", " a \n")
    with pytest.raises(DataError) as err:
        reader.ptb_raw_data(tmp_path)
    assert str(tmp_path / "ptb.test.txt") in str(err.value)


def test_empty_directory_names_expected_training_file(tmp_path):
    with pytest.raises(DataError) as err:
        reader.ptb_raw_data(tmp_path)
    assert str(tmp_path / "ptb.train.txt") in str(err.value)
    assert "train.txt" in str(err.value)


@pytest.mark.parametrize("split", reader.SPLITS)
@pytest.mark.parametrize("content", [b"", b"   \t "])
def test_empty_file(tmp_path, split, content):
    make_dir(tmp_path, " a \n", " a \n", " a \n")
    (tmp_path / f"ptb.{split}.txt").write_bytes(content)
    with pytest.raises(DataError, match="empty") as err:
        reader.ptb_raw_data(tmp_path)
    assert str(tmp_path / f"ptb.{split}.txt") in str(err.value)


def test_non_utf8_file_reports_byte_offset(tmp_path):
    make_dir(tmp_path, " a \n", " a \n", " a \n")
    bad = tmp_path / "ptb.valid.txt"
    bad.write_bytes(b" abc \xff def \n")
    with pytest.raises(DataError, match="UTF-8") as err:
        reader.ptb_raw_data(tmp_path)
    assert str(bad) in str(err.value)
    assert "offset 5" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file_in_build_vocab(tmp_path):
    with pytest.raises(DataError) as err:
        reader.build_vocab(tmp_path / "x.txt")
    assert str(tmp_path / "x.txt") in str(err.value)


# --- the real PTB ------------------------------------------------------------------------------


@pytest.mark.ptb
@pytest.mark.skipif(
    not os.environ.get("PTBFAST_DATA"),
    reason="set PTBFAST_DATA to a directory holding ptb.{train,valid,test}.txt to run",
)
def test_real_ptb():
    corpus = reader.load_corpus(os.environ["PTBFAST_DATA"])
    assert corpus.vocab_size == 10000
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
    assert corpus.word_to_id["the"] == 0
    assert corpus.word_to_id["<unk>"] == 1
    assert corpus.word_to_id["<eos>"] == 2
    assert corpus.id_to_word[:3] == ["the", "<unk>", "<eos>"]
    train, valid, test, vocab_size = reader.ptb_raw_data(os.environ["PTBFAST_DATA"])
    assert vocab_size == 10000 and train.dtype == valid.dtype == test.dtype == np.int32
    np.testing.assert_array_equal(train, corpus.train)
    # TF's "small" config: batch_size 20, num_steps 20 gives 2323 steps per training epoch.
    assert reader.epoch_size(len(train), 20, 20) == 2323
