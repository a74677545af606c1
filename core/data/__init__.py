"""Character data of report 004 as reusable blocks (see ``docs/building-blocks.md``).

:func:`core.data.char_data.char_batches` is the one entry point (toy-fox or WikiText-2 characters,
lengths as parameters); :mod:`core.data.toy` (pipeline B) and :mod:`core.data.wikitext` (pipeline A)
are underneath. Both import torch only inside the functions that build tensors.
"""
