//! Chat templates: the Jinja template an instruct model ships (GGUF `tokenizer.chat_template`,
//! or `chat_template` in a Hugging Face `tokenizer_config.json`), rendered with minijinja for
//! one user message, so `kernlab e2e --prompt` asks an instruct model the way it was trained.

use super::gguf::GgufFile;
use anyhow::{anyhow, Context, Result};
use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;
use std::path::Path;

/// One model's chat template with the special-token strings templates refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

impl ChatTemplate {
    /// The template of a GGUF file, if it has one; BOS/EOS strings from its vocabulary.
    pub fn from_gguf(g: &GgufFile) -> Result<Option<ChatTemplate>> {
        let Ok(source) = g.meta_str("tokenizer.chat_template") else { return Ok(None) };
        let tokens = g.meta_strings("tokenizer.ggml.tokens")?;
        let token =
            |key: &str| -> String { g.meta_usize(key).ok().and_then(|id| tokens.get(id).cloned()).unwrap_or_default() };
        Ok(Some(ChatTemplate {
            source,
            bos_token: token("tokenizer.ggml.bos_token_id"),
            eos_token: token("tokenizer.ggml.eos_token_id"),
        }))
    }

    /// The template in a Hugging Face model directory's tokenizer_config.json, if any. The
    /// field is a string, or a list of named templates of which "default" is the one to use.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<ChatTemplate>> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_tokenizer_config(&cfg).with_context(|| format!("{}: chat_template", path.display()))
    }

    fn from_tokenizer_config(cfg: &serde_json::Value) -> Result<Option<ChatTemplate>> {
        let source = match cfg.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .ok_or_else(|| anyhow!("a list of templates without one named \"default\""))?
                .to_string(),
            Some(other) => return Err(anyhow!("expected a string or a list of named templates, found {other}")),
        };
        // Special tokens are written either as a string or as an AddedToken object.
        let token = |key: &str| -> String {
            match cfg.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
                None => String::new(),
            }
        };
        Ok(Some(ChatTemplate { source, bos_token: token("bos_token"), eos_token: token("eos_token") }))
    }

    /// The prompt text for one user turn (after an optional system turn), ending with the
    /// assistant's generation prompt.
    pub fn render(&self, user: &str, system: Option<&str>) -> Result<String> {
        let mut env = Environment::new();
        // Templates call Python string methods (`.strip()`, `.startswith()`); pycompat
        // gives them their Python meaning.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        // Llama-3.2 templates stamp today's date into the system turn.
        env.add_function("strftime_now", |fmt: String| chrono::Utc::now().format(&fmt).to_string());
        env.add_template("chat", &self.source)
            .map_err(|e| anyhow!("the model's chat template does not parse: {e:#}"))?;
        let mut messages = vec![];
        if let Some(s) = system {
            messages.push(Message { role: "system", content: s });
        }
        messages.push(Message { role: "user", content: user });
        let t = env.get_template("chat").map_err(|e| anyhow!("{e:#}"))?;
        t.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| anyhow!("rendering the model's chat template: {e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template (as its GGUF carries it): a default system turn when the
    /// first message is not one.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn t(src: &str) -> ChatTemplate {
        ChatTemplate { source: src.into(), bos_token: "<s>".into(), eos_token: "</s>".into() }
    }

    #[test]
    fn smollm2_user_turn() {
        let s = t(SMOLLM2).render("What is 2+2?", None).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = t(SMOLLM2).render("Hi", Some("Be brief.")).unwrap();
        assert!(s.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"), "{s}");
    }

    #[test]
    fn python_methods_tokens_and_exceptions() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system turns') }}{% endif %}[{{ m['content'].strip() }}]{% endfor %}{{ eos_token }}";
        assert_eq!(t(src).render("  padded  ", None).unwrap(), "<s>[padded]</s>");
        let e = t(src).render("x", Some("sys")).unwrap_err().to_string();
        assert!(e.contains("no system turns"), "{e}");
        let e = t("{% for %}").render("x", None).unwrap_err().to_string();
        assert!(e.contains("does not parse"), "{e}");
    }

    #[test]
    fn tokenizer_config_forms() {
        let cfg = serde_json::json!({"chat_template": "{{ bos_token }}", "bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>"});
        let c = ChatTemplate::from_tokenizer_config(&cfg).unwrap().unwrap();
        assert_eq!((c.bos_token.as_str(), c.eos_token.as_str()), ("<|begin_of_text|>", "<|eot_id|>"));
        let named = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "a"}, {"name": "default", "template": "b"}]});
        assert_eq!(ChatTemplate::from_tokenizer_config(&named).unwrap().unwrap().source, "b");
        assert!(ChatTemplate::from_tokenizer_config(&serde_json::json!({})).unwrap().is_none());
        let bad = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "a"}]});
        assert!(ChatTemplate::from_tokenizer_config(&bad).is_err());
    }
}
