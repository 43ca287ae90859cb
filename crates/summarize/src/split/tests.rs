//! Unit tests of [`super`]: bounds, boundaries, determinism.
use super::*;

/// A document of `n` paragraphs of a few sentences each, with irregular whitespace.
fn document(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "Paragraph {i} opens   here. It talks about topic{i} at some length,\n\
                 over two lines! Does it end? \"Yes.\" (Really.) Then {} words follow",
                "more ".repeat(i % 7)
            )
        })
        .collect::<Vec<_>>()
        .join("\n  \n\n")
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

#[test]
fn chunks_are_bounded_and_keep_every_word_in_order() {
    let text = document(40);
    for max in [1, 5, 17, 40, 80, 200, 513, 2000, 1_000_000] {
        let chunks = split(&text, max);
        assert!(!chunks.is_empty());
        for chunk in &chunks {
            let len = chunk.chars().count();
            assert!((1..=max).contains(&len), "max {max}: a chunk of {len}: {chunk:?}");
            assert_eq!(chunk.trim(), chunk, "max {max}: no surrounding whitespace");
        }
        let longest_word = words(&text).iter().map(|w| w.chars().count()).max().unwrap_or(0);
        if max >= longest_word {
            assert_eq!(words(&chunks.join(" ")), words(&text), "max {max}: every word, in order");
        } else {
            let all: String = text.split_whitespace().collect();
            assert_eq!(chunks.concat().replace([' ', '\n'], ""), all, "max {max}: every character");
        }
    }
}

#[test]
fn the_same_text_gives_the_same_chunks() {
    let text = document(25);
    let first = split(&text, 300);
    for _ in 0..3 {
        assert_eq!(split(&text, 300), first);
    }
    assert_eq!(split(&text.clone(), 300), first);
    assert_ne!(split(&text, 200), first, "the limit is part of the input");
}

#[test]
fn paragraphs_are_kept_whole_when_they_fit() {
    let text = "Alpha one. Alpha two.\n\nBeta one.\r\n\r\nGamma   one.\nGamma two.";
    assert_eq!(split(text, 1000), ["Alpha one. Alpha two.\n\nBeta one.\n\nGamma one. Gamma two."]);
    assert_eq!(split(text, 32), ["Alpha one. Alpha two.\n\nBeta one.", "Gamma one. Gamma two."]);
    assert_eq!(split(text, 21), ["Alpha one. Alpha two.", "Beta one.", "Gamma one. Gamma two."]);
    assert_eq!(split(text, 20), ["Alpha one.", "Alpha two.", "Beta one.", "Gamma one.", "Gamma two."]);
    // A paragraph too long for a chunk is cut between sentences; its first sentence may join the
    // previous chunk.
    assert_eq!(
        split("Hi.\n\nLong sentence here now. Second one here.", 28),
        ["Hi.\n\nLong sentence here now.", "Second one here."]
    );
}

#[test]
fn sentences_and_words_are_the_fallbacks() {
    let text = "A short one. This sentence is rather longer than the limit allows. End.";
    assert_eq!(
        split(text, 20),
        ["A short one.", "This sentence is", "rather longer than", "the limit allows.", "End."]
    );
    assert_eq!(split("abcdefghij klm", 4), ["abcd", "efgh", "ij", "klm"]);
    assert_eq!(split("ééééé", 2), ["éé", "éé", "é"], "limits count characters, not bytes");
}

#[test]
fn whitespace_only_text_has_no_chunk() {
    assert!(split("", 10).is_empty());
    assert!(split(" \n\n\t \r\n", 10).is_empty());
    assert_eq!(split("x", 0), ["x"], "a limit of 0 is taken as 1");
}

#[test]
fn sentences_end_at_terminal_punctuation() {
    assert_eq!(
        sentences("He said \"stop.\" Then left… Why? (Unclear.) No end"),
        ["He said \"stop.\"", "Then left…", "Why?", "(Unclear.)", "No end"]
    );
    // The rule is simple on purpose: an abbreviation ends a sentence too.
    assert_eq!(sentences("See e.g. this"), ["See e.g.", "this"]);
    assert!(sentences("  \n ").is_empty());
}
