r"""A byte-level BPE tokenizer trained, when it is first asked for, on the book's own pages.

Byte-pair encoding (Sennrich et al. 2016) starts from an alphabet (here the 256
bytes, as in GPT-2 and Llama 3, so any text can be encoded and nothing is ever
"unknown") and repeatedly merges the most frequent adjacent pair of symbols in
the training text into a new symbol, until the vocabulary has ``vocab_size``
entries. Encoding replays those merges on new text. A frequent word ends up as
one token; a rare word as several pieces; a byte the corpus never saw as one
token per byte.

The training text is the pages of the two diffusion tracks as they stood at
one commit, shipped with the package (``book_corpus.json.gz``): a frozen
snapshot, so that editing or adding a diffusion page cannot move a token id or
a count printed on a transformer page. Training takes a fraction of a second
with the Rust ``tokenizers`` library, so it is done when the tokenizer is first
asked for and kept in memory; the same text gives the same merges on every
machine.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from infralens.core import positive_int

SPECIAL_TOKENS: tuple[str, ...] = tuple("<pad> <s> </s>".split())
"""Padding, beginning and end of sequence (``<pad>``, ``<s>``, ``</s>``), with ids 0, 1 and 2 (added before any
learned token)."""
PAD_ID = 0
"""The id of ``<pad>``, which fills the short rows of a batch."""
BOS_ID = 1
"""The id of ``<s>``, prepended to every encoded text."""
EOS_ID = 2
"""The id of ``</s>``, the end of a sequence."""
CORPUS_TRACKS = ("diffuser", "diffsynth")
"""The tracks whose pages are the training text."""
CORPUS_FILE = Path(__file__).with_name("book_corpus.json.gz")
"""The snapshot of those pages the package ships: ``{"commit", "note", "pages": [{"path", "text"}]}``."""
BYTE_ALPHABET = 256


def _tokenizers():
    """The ``tokenizers`` package, or an ``ImportError`` that says how to get it (it is not a core dependency)."""
    try:
        import tokenizers
    except ImportError as err:
        raise ImportError(
            "the BPE tokenizer is trained with Hugging Face tokenizers, which infralens does not require: "
            "pip install tokenizers (or install the repository with its docs or test extra)"
        ) from err
    return tokenizers


def book_root(start: Path | None = None) -> Path:
    """The repository checkout this module runs from: the first parent holding ``conf.py`` and ``docs/tracks``."""
    here = (start or Path(__file__)).resolve()
    for parent in (here, *here.parents):
        if (parent / "conf.py").is_file() and (parent / "docs" / "tracks").is_dir():
            return parent
    raise FileNotFoundError(
        f"no InfraLens checkout above {here}: the tokenizer trains on the book's pages, so run it from a "
        "clone of the repository (pip install -e .), or pass the pages' texts to train_bpe"
    )


def book_corpus(root: Path | None = None) -> list[str]:
    """The texts of the diffuser and diffsynth pages, in sorted path order (deterministic).

    By default the frozen snapshot shipped as ``book_corpus.json.gz`` (the tokenizer's
    training text); with ``root``, the pages of that checkout as they are now.

    >>> snapshot = json.loads(gzip.decompress(CORPUS_FILE.read_bytes()))
    >>> len(book_corpus()) == len(snapshot["pages"]), snapshot["pages"][0]["path"]
    (True, 'docs/tracks/diffsynth/index.md')
    """
    if root is None:
        snapshot = json.loads(gzip.decompress(CORPUS_FILE.read_bytes()))
        return [page["text"] for page in snapshot["pages"]]
    root = Path(root)
    paths = sorted(p for track in CORPUS_TRACKS for p in (root / "docs" / "tracks" / track).rglob("*.md"))
    if not paths:
        raise FileNotFoundError(f"no pages under {root / 'docs' / 'tracks'} for the tracks {CORPUS_TRACKS}")
    return [p.read_text(encoding="utf-8") for p in paths]


def snapshot_corpus(root: Path | None = None) -> str:
    """Write the pages of checkout ``root`` (default: :func:`book_root`) to ``book_corpus.json.gz``; its commit.

    Run by hand, and only on purpose: a new snapshot retrains the tokenizer, so
    every token id and count on the transformer pages must be checked again.
    """
    import subprocess

    root = book_root() if root is None else Path(root)
    commit = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    paths = sorted(p for track in CORPUS_TRACKS for p in (root / "docs" / "tracks" / track).rglob("*.md"))
    pages = [{"path": p.relative_to(root).as_posix(), "text": p.read_text(encoding="utf-8")} for p in paths]
    note = "the diffuser and diffsynth pages of the InfraLens book at this commit: the BPE tokenizer's training text"
    raw = json.dumps({"commit": commit, "note": note, "pages": pages}, ensure_ascii=False, indent=0, sort_keys=True)
    with gzip.GzipFile(CORPUS_FILE, "wb", mtime=0) as out:  # mtime=0: the same pages give the same bytes
        out.write(raw.encode())
    return commit


def train_bpe(texts: Iterable[str], *, vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer (``tokenizers.Tokenizer``) of ``vocab_size`` entries on ``texts``.

    The vocabulary is the three :data:`SPECIAL_TOKENS`, the 256 byte symbols,
    then one token per learned merge. Encoding a text prepends ``<s>``
    (:data:`BOS_ID`), as Llama's tokenizers do; ``decode`` drops it again.

    Training stops early when no pair of symbols occurs twice: a tiny corpus
    gives a smaller vocabulary than asked for.

    >>> tok = train_bpe(["low lower lowest"] * 50, vocab_size=300)
    >>> tok.get_vocab_size()          # 3 + 256 + 7 merges
    266
    >>> tok.encode(" lowest").tokens, tok.encode("lowest").tokens  # Ġ is the space byte
    (['<s>', 'Ġlowest'], ['<s>', 'low', 'e', 'st'])
    """
    tk = _tokenizers()
    Tokenizer, decoders, models, pre_tokenizers = tk.Tokenizer, tk.decoders, tk.models, tk.pre_tokenizers
    processors, trainers = tk.processors, tk.trainers
    floor = len(SPECIAL_TOKENS) + BYTE_ALPHABET
    v = positive_int("vocab_size", vocab_size, example=2048)
    if v <= floor:
        raise ValueError(
            f"vocab_size must exceed {floor} (3 special tokens and 256 bytes) to learn any merge, "
            f"e.g. vocab_size=2048; got {v}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # bytes -> printable symbols, Ġ = space
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=v,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    return tok


@functools.cache
def _book_tokenizer_json(vocab_size: int) -> str:
    return train_bpe(book_corpus(), vocab_size=vocab_size).to_str()


def book_tokenizer(vocab_size: int = 2048):
    """The BPE tokenizer of :func:`train_bpe` trained on :func:`book_corpus` (trained once per process).

    Each call returns a fresh ``tokenizers.Tokenizer``, so enabling padding on
    one does not change the next.

    >>> tok = book_tokenizer()
    >>> tok.get_vocab_size(), tok.token_to_id("<pad>"), tok.encode("the attention").tokens
    (2048, 0, ['<s>', 'the', 'Ġattention'])
    """
    return _tokenizers().Tokenizer.from_str(_book_tokenizer_json(positive_int("vocab_size", vocab_size, example=2048)))


def encode_batch(tokenizer, texts: Sequence[str], *, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(B, S)`` and attention mask ``(B, S)`` of a batch, padded with ``<pad>`` by ``tokenizers`` itself.

    ``S`` is the longest text's length in tokens; shorter rows get :data:`PAD_ID`
    on the ``padding_side`` and a 0 in the mask there (1 on real tokens).
    ``padding_side="left"`` is what batched generation uses, so that every
    row's last real token is in the last column.

    >>> ids, mask = encode_batch(book_tokenizer(), ["the noise", "the"], padding_side="left")
    >>> ids[1, 0].item(), mask.tolist()
    (0, [[1, 1, 1], [0, 1, 1]])
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', e.g. padding_side='right'; got {padding_side!r}")
    if isinstance(texts, str) or not texts:
        raise ValueError(f"texts must be a non-empty list of strings, e.g. ['the noise', 'the']; got {texts!r}")
    tok = tokenizer.__class__.from_str(tokenizer.to_str())  # a copy: the caller's tokenizer keeps its settings
    tok.enable_padding(direction=padding_side, pad_id=PAD_ID, pad_token=SPECIAL_TOKENS[PAD_ID])
    encodings = tok.encode_batch(list(texts))
    ids = torch.tensor([e.ids for e in encodings])  # (B, S)
    mask = torch.tensor([e.attention_mask for e in encodings])  # (B, S), 1 = real token
    return ids, mask
