"""parse: brochure PDF -> layout blocks in reading order (text layer first, OCR where needed).

Run it as ``python -m stages.parse`` (the CLI is ``__main__.py``). Per page:
1. the PyMuPDF text layer (``get_text('dict')``: lines, boxes, font sizes) when it is usable;
   a sparse one (< ``textlayer_min_chars``) is kept and the page is also OCR'd whole,
   a garbage one (replacement/private-use/CID/mis-encoded characters) is dropped and the page OCR'd;
2. ruled tables (``find_tables``) as 'a | b' rows, their text-layer lines removed;
3. OCR (engine from ``parse.ocr_engine``) of the page render (pdf2image) for whole-page OCR, or of
   each embedded raster image larger than ``min_image_area`` on text pages that is not a photo (a
   flat-background test: photos become figure blocks without OCR); scattered whole pages (maps,
   covers) get a second, sparse-text pass; OCR words that repeat the text layer (or another OCR
   region or pass) are dropped, and OCR blocks must look like text (confidence, share of
   Hangul/letters/digits) so photo noise is discarded;
4. block types (title/text/list/table/caption/header/footer/figure) and column-aware reading order,
   figures in place.

Where things are:
- ``__main__.py``  the CLI and ``run()`` (params, checks, outputs, metrics)
- ``config.py``    ``check_parse``: the typed ``parse:`` section's engine-specific keys
- ``pdf.py``       opening/validating the input PDF, rendering pages and regions
- ``page.py``      one page: text layer, tables, OCR regions, photo test, block types, order
- ``runner.py``    all pages, in a process pool when the engine allows it
- ``layout.py``    pure layout helpers: lines -> blocks, garbage test, types, tables, reading order
- ``ocr.py``       OCR engines (Tesseract on cpu, PaddleOCR on runpod) and their registry
- ``ocr_lines.py`` OCR words/lines/blocks with boxes; engine lines -> blocks (gutters, tables)
- ``outputs.py``   block/page records, data/parsed, run metrics
- ``cer.py``       character error rate against an optional ground truth

Outputs follow docs/data-contracts.md (parse section); metrics add CER when a ground truth is given.
"""
