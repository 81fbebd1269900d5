"""The Great Expectations data docs, made to work offline.

GX's pages take Bootstrap, jQuery, Font Awesome, bootstrap-table, a date picker and Vega from CDNs
(and a logo from S3 that carries the data context id): without internet they lose their styling and
their index table stays empty. This rewrites the generated site: Bootstrap 4, jQuery and Font Awesome
are copied next to the pages from their PyPI packages (XStatic), a few lines of script stand in for
bootstrap-table (the suite and validation lists render as plain sortable-free tables), and the rest
(date picker, Vega charts, the remote logo) is dropped. Nothing on the pages reaches out any more.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ASSETS_DIR = "static/offline"

# bootstrap-table stand-in: draws options.data as rows, linking a row that names its page.
BOOTSTRAP_TABLE_SHIM = """
(function ($) {
  if (!$ || $.fn.bootstrapTable) { return; }
  $.fn.bootstrapTable = function (options) {
    if (typeof options !== 'object') { return this; }
    var columns = options.columns || [], rows = (options.data || []).slice();
    if (options.sortName) {
      rows.sort(function (a, b) { return String(a[options.sortName]).localeCompare(String(b[options.sortName])); });
    }
    var esc = function (v) { return String(v === undefined || v === null ? '' : v); };
    return this.each(function () {
      var head = '<thead><tr>' + columns.map(function (c) { return '<th>' + esc(c.title) + '</th>'; }).join('') + '</tr></thead>';
      var body = '<tbody>' + rows.map(function (r) {
        return '<tr>' + columns.map(function (c, i) {
          var cell = esc(r[c.field]);
          return '<td>' + (i === 0 && r._table_row_link_path ? '<a href="' + r._table_row_link_path + '">' + cell + '</a>' : cell) + '</td>';
        }).join('') + '</tr>';
      }).join('') + '</tbody>';
      $(this).addClass('table table-sm table-hover').html(head + body);
    });
  };
})(window.jQuery);
"""


def _asset_sources() -> dict[str, Path]:
    import xstatic.pkg.bootstrap as bootstrap
    import xstatic.pkg.font_awesome as font_awesome
    import xstatic.pkg.jquery as jquery

    return {
        "bootstrap": Path(bootstrap.BASE_DIR),
        "jquery": Path(jquery.BASE_DIR),
        "font_awesome": Path(font_awesome.BASE_DIR),
    }


def _copy_assets(site: Path) -> Path:
    target = site / ASSETS_DIR
    sources = _asset_sources()
    (target / "bootstrap").mkdir(parents=True, exist_ok=True)
    shutil.copy(sources["bootstrap"] / "css" / "bootstrap.min.css", target / "bootstrap" / "bootstrap.min.css")
    shutil.copy(
        sources["bootstrap"] / "js" / "bootstrap.bundle.min.js", target / "bootstrap" / "bootstrap.bundle.min.js"
    )
    shutil.copy(sources["jquery"] / "jquery.min.js", target / "jquery.min.js")
    for part in ("css", "webfonts"):  # all.min.css finds its fonts at ../webfonts
        shutil.copytree(sources["font_awesome"] / part, target / "font-awesome" / part, dirs_exist_ok=True)
    (target / "bootstrap-table-shim.js").write_text(BOOTSTRAP_TABLE_SHIM)
    return target


def _tag(pattern: str) -> re.Pattern:
    """A <link ...> or <script ...></script> whose URL matches `pattern`."""
    return re.compile(
        rf"""<link[^>]*href=["']{pattern}[^"']*["'][^>]*>|<script[^>]*src=["']{pattern}[^"']*["'][^>]*>\s*</script>""",
        re.IGNORECASE,
    )


def make_offline(site: Path) -> list[Path]:
    """Rewrite every page of the data docs site at `site` (the folder of index.html); returns them."""
    assets = _copy_assets(site)
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        prefix = os.path.relpath(assets, page.parent).replace(os.sep, "/")
        replacements = [
            (
                _tag(r"https://[^\"']*bootstrap(?:\.min)?/?[^\"']*/css/bootstrap\.min\.css"),
                f'<link rel="stylesheet" href="{prefix}/bootstrap/bootstrap.min.css">',
            ),
            (
                _tag(r"https://[^\"']*/font-awesome/[^\"']*all\.min\.css"),
                f'<link rel="stylesheet" href="{prefix}/font-awesome/css/all.min.css">',
            ),
            (_tag(r"https://code\.jquery\.com/jquery-[^\"']*\.js"), f'<script src="{prefix}/jquery.min.js"></script>'),
            (
                _tag(r"https://[^\"']*bootstrap/[^\"']*/js/bootstrap\.min\.js"),
                f'<script src="{prefix}/bootstrap/bootstrap.bundle.min.js"></script>',
            ),
            (
                _tag(r"https://unpkg\.com/bootstrap-table@[^\"']*/dist/bootstrap-table\.min\.js"),
                f'<script src="{prefix}/bootstrap-table-shim.js"></script>',
            ),
        ]
        text = page.read_text(encoding="utf-8")
        for pattern, local in replacements:
            text = pattern.sub(local, text)
        # Everything else remote that a page would load: popper (in the bundle now), bootstrap-table's
        # CSS and extensions, the date picker, Vega, the dark theme, and the remote logo image.
        text = _tag(r"https?://").sub("", text)
        logo = os.path.relpath(site / "static" / "images" / "logo-long.png", page.parent).replace(os.sep, "/")
        text = re.sub(r"""<img([^>]*)src=["']https?://[^"']*["']""", rf'<img\1src="{logo}"', text)
        page.write_text(text, encoding="utf-8")
    return pages
