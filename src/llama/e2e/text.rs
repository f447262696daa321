//! Text in and out of `kernlab e2e`: the prompt a user typed, as the model expects it (its
//! chat template for instruct models, BOS by the model's own policy), and the generated text
//! streamed to the terminal as the tokens arrive.

use crate::llama::chat::ChatTemplate;
use crate::llama::gguf_model::BosPolicy;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::io::Write;
use tokenizers::Tokenizer;

/// What a model needs to turn text into tokens and back.
pub struct TextModel {
    pub tokenizer: Tokenizer,
    pub bos: BosPolicy,
    pub chat: Option<ChatTemplate>,
}

/// A prompt ready to run: the user's text, what the model is fed, and its token ids.
#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    pub user: String,
    /// The text after the chat template (equal to `user` without one).
    pub rendered: String,
    pub chat_template: bool,
    #[serde(skip)]
    pub ids: Vec<u32>,
}

/// How the prompt is formed: the model's chat template when it has one, unless `raw`.
pub fn prepare(m: &TextModel, user: &str, system: Option<&str>, raw: bool) -> Result<Prompt> {
    let (rendered, chat_template) = match (&m.chat, raw) {
        (Some(t), false) => (t.render(user, system)?, true),
        _ => (user.to_string(), false),
    };
    if system.is_some() && !chat_template {
        anyhow::bail!("--system needs the model's chat template (this model has none, or --raw-prompt was given)");
    }
    // Special tokens written by the template (<|im_start|>) must become their ids, which the
    // tokenizer does for added tokens; a template that writes BOS itself gets no second one.
    let with_specials = m.bos == BosPolicy::PostProcessor;
    let enc =
        m.tokenizer.encode(rendered.as_str(), with_specials).map_err(|e| anyhow!("tokenizing the prompt: {e}"))?;
    let mut ids = Vec::with_capacity(enc.len() + 1);
    if let BosPolicy::Prepend(b) = m.bos {
        if enc.get_ids().first() != Some(&b) {
            ids.push(b);
        }
    }
    ids.extend_from_slice(enc.get_ids());
    if ids.is_empty() {
        anyhow::bail!("--prompt is empty after tokenizing: give some text");
    }
    Ok(Prompt { user: user.to_string(), rendered, chat_template, ids })
}

/// Prints the text of one sequence as its tokens arrive. Each step decodes every token so
/// far and prints what is new, so a character split across byte-level tokens appears once
/// it is whole (a partial UTF-8 sequence decodes to U+FFFD, which is held back).
pub struct Streamer<'a> {
    tokenizer: &'a Tokenizer,
    printed: usize,
    eos: &'a [u32],
}

impl<'a> Streamer<'a> {
    pub fn new(tokenizer: &'a Tokenizer, eos: &'a [u32]) -> Self {
        Streamer { tokenizer, printed: 0, eos }
    }

    /// The text of `tokens` without a final EOS.
    pub fn text(&self, tokens: &[u32]) -> String {
        let body = match tokens.last() {
            Some(t) if self.eos.contains(t) => &tokens[..tokens.len() - 1],
            _ => tokens,
        };
        self.tokenizer.decode(body, true).unwrap_or_default()
    }

    /// Prints what `tokens` add to what was printed; returns the new piece.
    pub fn step(&mut self, tokens: &[u32], out: &mut impl Write) -> String {
        let text = self.text(tokens);
        let stable = text.trim_end_matches('\u{FFFD}');
        let piece = stable.get(self.printed..).unwrap_or_default().to_string();
        if !piece.is_empty() {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
            self.printed = stable.len();
        }
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::AddedToken;

    fn tok() -> Tokenizer {
        let vocab = [("hello", 0), ("world", 1), ("[UNK]", 2), ("<s>", 3), ("</s>", 4), ("<|user|>", 5)]
            .into_iter()
            .map(|(s, i)| (s.to_string(), i))
            .collect();
        let wl = WordLevel::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
        let mut t = Tokenizer::new(wl);
        t.with_pre_tokenizer(Some(Whitespace {}));
        t.add_special_tokens(&[
            AddedToken::from("<s>", true),
            AddedToken::from("</s>", true),
            AddedToken::from("<|user|>", true),
        ]);
        t
    }

    fn model(bos: BosPolicy, chat: Option<&str>) -> TextModel {
        TextModel {
            tokenizer: tok(),
            bos,
            chat: chat.map(|s| ChatTemplate { source: s.into(), bos_token: "<s>".into(), eos_token: "</s>".into() }),
        }
    }

    #[test]
    fn chat_template_specials_and_bos() {
        let m = model(BosPolicy::Prepend(3), Some("<|user|> {{ messages[-1]['content'] }}"));
        let p = prepare(&m, "hello world", None, false).unwrap();
        assert_eq!((p.rendered.as_str(), p.chat_template), ("<|user|> hello world", true));
        assert_eq!(p.ids, vec![3, 5, 0, 1]);
        // --raw-prompt: the text as typed.
        let p = prepare(&m, "hello world", None, true).unwrap();
        assert_eq!((p.ids.clone(), p.chat_template), (vec![3, 0, 1], false));
        // A template that writes BOS itself gets no second one.
        let m = model(BosPolicy::Prepend(3), Some("{{ bos_token }}{{ messages[-1]['content'] }}"));
        assert_eq!(prepare(&m, "world", None, false).unwrap().ids, vec![3, 1]);
        let e = prepare(&model(BosPolicy::None, None), "hello", Some("sys"), false).unwrap_err().to_string();
        assert!(e.contains("--system"), "{e}");
        assert!(prepare(&model(BosPolicy::None, None), "", None, false).is_err());
    }

    #[test]
    fn streaming_prints_each_piece_once_and_drops_eos() {
        let t = tok();
        let eos = [4];
        let mut s = Streamer::new(&t, &eos);
        let mut out = vec![];
        let mut pieces = vec![];
        for toks in [vec![0], vec![0, 1], vec![0, 1, 4]] {
            pieces.push(s.step(&toks, &mut out));
        }
        assert_eq!(String::from_utf8(out).unwrap(), "hello world");
        assert_eq!(pieces[2], "");
        assert_eq!(s.text(&[0, 1, 4]), "hello world");
    }
}
