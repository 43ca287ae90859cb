//! Unit tests of [`super`]: the extractive summarizer and the summary limits.
use super::*;

const TEXT: &str = "Rust is a systems language. The weather was nice on Tuesday. \
Rust programs manage memory without a garbage collector, and Rust checks borrows at compile time. \
Lunch was late. Many teams adopt Rust for memory safety.";

#[test]
fn the_extractive_summary_keeps_the_most_typical_sentences_in_order() {
    let s = ExtractiveSummarizer::new();
    let summary = s.summarize_now(TEXT);
    assert_eq!(
        summary, "Rust is a systems language. Many teams adopt Rust for memory safety.",
        "the sentences about the text's frequent words, in their original order"
    );
    assert_eq!(s.summarize_now(TEXT), summary, "deterministic");
    assert_eq!(s.with_max_sentences(1).summarize_now(TEXT), "Rust is a systems language.");
}

#[test]
fn short_texts_keep_one_sentence_and_blank_texts_none() {
    let s = ExtractiveSummarizer::new();
    assert_eq!(s.summarize_now("Only one sentence here"), "Only one sentence here");
    assert_eq!(s.summarize_now("First thing. Second thing."), "First thing.", "a tie keeps the earlier");
    assert_eq!(s.summarize_now("  \n\n "), "");
    assert_eq!(s.summarize_now("!!! ???"), "!!!", "no content word: the first sentence");
}

#[test]
fn the_extractive_summary_is_bounded() {
    let long = format!("{}.", "word ".repeat(1_000).trim_end());
    let summary = ExtractiveSummarizer::new().summarize_now(&long);
    assert!(summary.chars().count() <= 600, "{}", summary.len());
    assert!(summary.ends_with("word..."), "cut at a word boundary: {summary}");
    let one_word = "x".repeat(5_000);
    let summary = ExtractiveSummarizer::new().with_max_chars(100).summarize_now(&one_word);
    assert_eq!(summary.chars().count(), 100);
    assert!(validate_summary(&summary).is_ok());
    let summary = ExtractiveSummarizer::new().with_max_chars(1_000_000).summarize_now(&long);
    assert!(summary.chars().count() <= MAX_SUMMARY_CHARS);
}

#[tokio::test]
async fn combining_keeps_one_more_sentence() {
    let s = ExtractiveSummarizer::new();
    let partials: Vec<String> = ["Rust is fast. Rust is safe.", "Rust is fun. Cats sleep.", "Rust wins."]
        .into_iter()
        .map(String::from)
        .collect();
    let combined = s.combine(&partials).await.expect("combine");
    assert_eq!(combined, s.combine_now(&partials));
    assert_eq!(combined, "Rust is fast. Rust is safe. Rust is fun.");
    let repeated: Vec<String> = vec!["Rust is fast.".into(), "rust is fast.".into(), "Go is fast.".into()];
    assert_eq!(s.combine_now(&repeated), "Rust is fast. Go is fast.", "a repeated sentence once");
    let err = s.summarize(" ").await.expect_err("blank");
    assert_eq!(err.case, FailureCase::InvalidJobData);
}

#[test]
fn summaries_are_checked() {
    assert!(validate_summary("fine").is_ok());
    assert!(validate_summary(&"é".repeat(MAX_SUMMARY_CHARS)).is_ok(), "characters, not bytes");
    assert!(validate_summary("").expect_err("empty").contains("empty"));
    assert!(validate_summary(" \n").expect_err("blank").contains("empty"));
    assert!(validate_summary("a\0b").expect_err("nul").contains("NUL"));
    let long = "x".repeat(MAX_SUMMARY_CHARS + 1);
    assert!(validate_summary(&long).expect_err("long").contains("at most 2000"));
}
