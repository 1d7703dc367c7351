//! Finding things in JSON text: the line and column of the value at a JSON
//! pointer, and the nesting depth, without building a value.
//!
//! Error messages and CI annotations name lines, but `serde_json::Value`
//! forgets where a value stood; this scanner goes back to the text.

/// A place in a text: 1-based line and column (columns count characters).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Position {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

/// The deepest nesting of arrays and objects in `text` if it goes past
/// `limit`, with the position where it first did. Strings are skipped, so
/// brackets inside them do not count.
pub fn depth_beyond(text: &str, limit: usize) -> Option<Position> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => index = end_of_string(bytes, index),
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(Position::of_offset(text, index));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    None
}

/// The position of the value at JSON pointer `pointer` (RFC 6901) in the JSON
/// `text`, or `None` when the text holds no such value.
pub fn locate(text: &str, pointer: &str) -> Option<Position> {
    let mut scanner = Scanner { text, pos: 0 };
    scanner.skip_whitespace();
    if !pointer.is_empty() {
        let segments = pointer.strip_prefix('/')?.split('/');
        for segment in segments {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            scanner.enter(&segment)?;
        }
    }
    Some(Position::of_offset(text, scanner.pos))
}

/// The position of the value at `pointer`, or of the nearest enclosing value
/// that exists; the start of the text when even the root is missing.
pub fn locate_nearest(text: &str, pointer: &str) -> Position {
    let mut pointer = pointer;
    loop {
        if let Some(position) = locate(text, pointer) {
            return position;
        }
        match pointer.rfind('/') {
            Some(index) => pointer = &pointer[..index],
            None => return Position { line: 1, column: 1 },
        }
    }
}

/// The index of the closing quote of the string that opens at `start` (or
/// the last index when it never closes).
fn end_of_string(bytes: &[u8], start: usize) -> usize {
    let mut index = start + 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return index,
            _ => index += 1,
        }
    }
    bytes.len().saturating_sub(1)
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    /// Reads a string at the cursor and returns its decoded text.
    fn read_string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.pos;
        let end = end_of_string(self.text.as_bytes(), start);
        self.pos = end + 1;
        let raw = self.text.get(start..=end)?;
        if raw.contains('\\') {
            serde_json::from_str(raw).ok()
        } else {
            raw.get(1..raw.len() - 1).map(str::to_owned)
        }
    }

    /// Skips one whole value at the cursor, without recursion.
    fn skip_value(&mut self) -> Option<()> {
        self.skip_whitespace();
        let bytes = self.text.as_bytes();
        match self.peek()? {
            b'{' | b'[' => {
                let mut depth = 0usize;
                while let Some(byte) = self.peek() {
                    match byte {
                        b'"' => self.pos = end_of_string(bytes, self.pos),
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                None
            }
            b'"' => self.read_string().map(drop),
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    /// Moves the cursor to the member `segment` of the object or array at the
    /// cursor.
    fn enter(&mut self, segment: &str) -> Option<()> {
        self.skip_whitespace();
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                loop {
                    self.skip_whitespace();
                    let key = self.read_string()?;
                    self.expect(b':')?;
                    self.skip_whitespace();
                    if key == segment {
                        return Some(());
                    }
                    self.skip_value()?;
                    self.expect(b',')?;
                }
            }
            b'[' => {
                let wanted: usize = segment.parse().ok()?;
                self.pos += 1;
                for _ in 0..wanted {
                    self.skip_value()?;
                    self.expect(b',')?;
                }
                self.skip_whitespace();
                (self.peek()? != b']').then_some(())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "{\n  \"a\": {\"b\": [10, {\"c\": true}]},\n  \"x/y\": \"s\\\"}\",\n  \"\\u0071\": 1,\n  \"é\": 2, \"z\": 3\n}";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn locates_values_by_pointer() {
        assert_eq!(locate(TEXT, ""), at(1, 1));
        assert_eq!(locate(TEXT, "/a"), at(2, 8));
        assert_eq!(locate(TEXT, "/a/b/0"), at(2, 15));
        assert_eq!(locate(TEXT, "/a/b/1/c"), at(2, 25));
        assert_eq!(locate(TEXT, "/x~1y"), at(3, 10));
        assert_eq!(locate(TEXT, "/q"), at(4, 13));
        assert_eq!(locate(TEXT, "/z"), at(5, 16));
    }

    #[test]
    fn missing_values_are_none_and_nearest_falls_back() {
        assert_eq!(locate(TEXT, "/a/b/2"), None);
        assert_eq!(locate(TEXT, "/nope"), None);
        assert_eq!(locate(TEXT, "/a/b/x"), None);
        assert_eq!(locate_nearest(TEXT, "/a/b/7/c"), Position { line: 2, column: 14 });
        assert_eq!(locate_nearest("garbage", "/a"), Position { line: 1, column: 1 });
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(depth_beyond("[[[\"[[[[[[\"]]]", 3), None);
        assert_eq!(depth_beyond("[[[[]]]]", 3), Some(Position { line: 1, column: 4 }));
        let deep = "[".repeat(10_000);
        assert_eq!(depth_beyond(&deep, 64), Some(Position { line: 1, column: 65 }));
    }
}
