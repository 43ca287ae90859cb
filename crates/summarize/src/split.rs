//! Splitting a document into chunks, and into sentences: pure, deterministic text functions.
//!
//! The same text and limit always give the same chunks — on every machine and every attempt — so
//! a retried job's chunk `i` is the chunk whose summary an earlier attempt stored under step
//! `chunk-{i}`. Changing these rules changes the chunks of jobs in flight: treat them as part of
//! the kind's stored format.
//!
//! # Rules
//!
//! Paragraphs are separated by blank lines; inside a paragraph every run of whitespace becomes one
//! space. Chunks are packed greedily, in order, from the largest pieces that fit: whole paragraphs
//! (joined by a blank line), else the paragraph's sentences, else a sentence's words (joined by a
//! space; such a sentence starts a new chunk), else — for a single word longer than the limit —
//! runs of `max_chars` characters. A sentence ends at a word ending in `.`, `!`, `?` or `…`
//! (closing quotes and brackets allowed after it). Every chunk has 1 to `max_chars` characters and
//! neither starts nor ends with whitespace; the chunks hold every word of the text, in order (a
//! word longer than the limit cut into runs).

/// What joins two paragraphs in one chunk.
const PARAGRAPH_SEPARATOR: &str = "\n\n";

/// Splits `text` into chunks of at most `max_chars` characters (at least 1) on paragraph, then
/// sentence, then word boundaries. Whitespace-only text gives no chunk.
///
/// ```
/// use longhaul_summarize::split::split;
///
/// let text = "First paragraph. It has two sentences.\n\nSecond one.";
/// assert_eq!(split(text, 100), ["First paragraph. It has two sentences.\n\nSecond one."]);
/// assert_eq!(split(text, 40), ["First paragraph. It has two sentences.", "Second one."]);
/// assert_eq!(split(text, 20), ["First paragraph.", "It has two", "sentences.", "Second one."]);
/// ```
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let mut packer = Packer::new(max_chars.max(1));
    for paragraph in paragraphs(text) {
        if packer.fits_alone(&paragraph) {
            packer.push(&paragraph, PARAGRAPH_SEPARATOR);
            continue;
        }
        for (k, sentence) in sentences_of(&paragraph).iter().enumerate() {
            let sep = if k == 0 { PARAGRAPH_SEPARATOR } else { " " };
            if packer.fits_alone(sentence) {
                packer.push(sentence, sep);
                continue;
            }
            // A sentence cut into words starts a chunk of its own: no chunk ends mid-sentence
            // after a whole one.
            packer.flush();
            for (j, word) in sentence.split(' ').enumerate() {
                let sep = if j == 0 { sep } else { " " };
                if packer.fits_alone(word) {
                    packer.push(word, sep);
                    continue;
                }
                for (h, piece) in char_runs(word, packer.max).iter().enumerate() {
                    packer.push(piece, if h == 0 { sep } else { "" });
                }
            }
        }
    }
    packer.finish()
}

/// The sentences of `text`, in order, each on one line with single spaces (paragraph breaks end a
/// sentence too).
///
/// ```
/// use longhaul_summarize::split::sentences;
///
/// assert_eq!(sentences("One.  Two\nlines!\n\nThree"), ["One.", "Two lines!", "Three"]);
/// ```
pub fn sentences(text: &str) -> Vec<String> {
    paragraphs(text).iter().flat_map(|p| sentences_of(p)).collect()
}

/// The paragraphs of `text` (separated by blank lines), whitespace collapsed to single spaces.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !words.is_empty() {
                out.push(words.join(" "));
                words.clear();
            }
        } else {
            words.extend(line.split_whitespace());
        }
    }
    if !words.is_empty() {
        out.push(words.join(" "));
    }
    out
}

/// Whether `word` ends a sentence.
fn ends_sentence(word: &str) -> bool {
    let bare = word.trim_end_matches(['"', '\'', ')', ']', '”', '’', '»']);
    bare.ends_with(['.', '!', '?', '…'])
}

/// The sentences of one normalised paragraph (words separated by single spaces).
fn sentences_of(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
        current.push(word);
        if ends_sentence(word) {
            out.push(current.join(" "));
            current.clear();
        }
    }
    if !current.is_empty() {
        out.push(current.join(" "));
    }
    out
}

/// `word` cut into runs of `max` characters (the last may be shorter).
fn char_runs(word: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    chars.chunks(max).map(|run| run.iter().collect()).collect()
}

/// Greedy packing of pieces into chunks of at most `max` characters.
struct Packer {
    max: usize,
    chunks: Vec<String>,
    current: String,
    /// `current`'s length in characters.
    len: usize,
}

impl Packer {
    fn new(max: usize) -> Self {
        Self { max, chunks: Vec::new(), current: String::new(), len: 0 }
    }

    fn fits_alone(&self, piece: &str) -> bool {
        piece.chars().count() <= self.max
    }

    /// Appends `piece` (at most `max` characters) after `sep`, or starts a new chunk with it.
    fn push(&mut self, piece: &str, sep: &str) {
        let n = piece.chars().count();
        if self.current.is_empty() {
            self.current.push_str(piece);
            self.len = n;
        } else if self.len + sep.chars().count() + n <= self.max {
            self.current.push_str(sep);
            self.current.push_str(piece);
            self.len += sep.chars().count() + n;
        } else {
            self.flush();
            self.current.push_str(piece);
            self.len = n;
        }
    }

    /// Ends the current chunk, if any.
    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.chunks.push(std::mem::take(&mut self.current));
            self.len = 0;
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.chunks
    }
}

#[cfg(test)]
mod tests;
