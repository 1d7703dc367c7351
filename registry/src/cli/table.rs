//! Aligned text tables, as every listing command prints them.

use std::fmt::Write as _;
use std::io::Write;

/// Writes rows as aligned columns, two spaces apart, each line after
/// `indent` spaces; `right[i]` right-aligns column `i`.
pub(super) fn write_table<const N: usize>(
    out: &mut dyn Write,
    indent: usize,
    rows: &[[String; N]],
    right: &[bool; N],
) -> std::io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = " ".repeat(indent);
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            let gap = if index == 0 { "" } else { "  " };
            // Writing to a String cannot fail.
            let _ = if right[index] {
                write!(line, "{gap}{cell:>width$}")
            } else {
                write!(line, "{gap}{cell:<width$}")
            };
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
