//! Incremental text assembly for streamed generation: UTF-8 reassembly across token
//! boundaries and holding back text that may be the start of a stop string.

/// Reassembles UTF-8 text from token byte pieces that may split a character.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends bytes and returns the text that is complete so far. Invalid sequences become
    /// U+FFFD; an incomplete sequence at the end is kept for the next call.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8 by construction.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Returns whatever is left, lossily.
    pub(crate) fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Holds back text that could be the beginning of a stop string.
#[derive(Debug)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// Result of feeding text to a [`StopMatcher`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopResult {
    /// Text that can be released now; no stop string matched.
    Continue(String),
    /// A stop string matched; the text before it, which is the last text to release.
    Stopped(String),
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopMatcher { stops, held: String::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> StopResult {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return StopResult::Continue(std::mem::take(&mut self.held));
        }
        // Earliest match of any stop string.
        let earliest = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = earliest {
            let out = self.held[..at].to_string();
            self.held.clear();
            return StopResult::Stopped(out);
        }
        // Longest suffix of `held` that is a proper prefix of some stop string.
        let mut keep_from = self.held.len();
        for (i, _) in self.held.char_indices() {
            let suffix = &self.held[i..];
            if self.stops.iter().any(|s| s.starts_with(suffix)) {
                keep_from = i;
                break;
            }
        }
        let rest = self.held.split_off(keep_from);
        let out = std::mem::replace(&mut self.held, rest);
        StopResult::Continue(out)
    }

    /// Releases held-back text (the generation ended for another reason).
    pub(crate) fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_pieces() {
        let mut s = Utf8Stream::default();
        let bytes = "é€".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "€");
        assert_eq!(s.push(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(s.push(&[0xe2]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_strings_are_held_and_cut() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), StopResult::Continue("hello ".into()));
        assert_eq!(m.push("N"), StopResult::Continue(String::new()));
        assert_eq!(m.push("x"), StopResult::Continue("ENx".into()));
        assert_eq!(m.push("ab\n"), StopResult::Continue("ab".into()));
        assert_eq!(m.push("\nmore"), StopResult::Stopped(String::new()));
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("aENDb"), StopResult::Stopped("a".into()));
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("abc"), StopResult::Continue("abc".into()));
        let mut m = StopMatcher::new(vec!["ÿz".into()]);
        assert_eq!(m.push("aÿ"), StopResult::Continue("a".into()));
        assert_eq!(m.flush(), "ÿ");
    }
}
