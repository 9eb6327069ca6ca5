//! Byte-level BPE pre-tokenizers by the name a GGUF gives them (`tokenizer.ggml.pre`): the
//! regular expressions that split text into words before merging, as llama.cpp applies them.
//!
//! llama.cpp splits with each expression in turn, every match and every gap between matches
//! becoming a piece the next expression splits further; a `Split` pre-tokenizer with the
//! `Isolated` behaviour does exactly that, so the expressions carry over one for one. Where
//! llama.cpp rewrote a Hugging Face expression for its own regex engine (case-insensitive
//! groups spelled out as character pairs), the rewritten form is used: it is what llama.cpp
//! runs, and it means the same.

/// How one pre-tokenizer splits text, and the defaults llama.cpp gives its vocabularies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    /// The name as written in the GGUF.
    pub name: &'static str,
    /// The expressions, applied in order.
    pub regexes: &'static [&'static str],
    /// Whether a word that is itself a token skips merging (Llama 3 style vocabularies).
    pub ignore_merges: bool,
    /// Whether a BOS token is added when the GGUF does not say.
    pub add_bos: bool,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str =
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK3: &str =
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// Every pre-tokenizer loopc knows, by family; the first name of each is the one the
/// family's converter writes.
const FAMILIES: &[(&[&str], &[&str], bool, bool)] = &[
    // (names, regexes, ignore_merges, add_bos)
    (&["default"], &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], false, false),
    (&["llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"], &[LLAMA3], true, true),
    (&["dbrx", "smaug-bpe"], &[LLAMA3], false, false),
    (&["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "kormo"], &[QWEN2], false, false),
    (&["qwen35"], &[QWEN35], false, false),
    (&["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "gigachat", "exaone4", "mellum"], &[GPT2], false, false),
    (&["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"], &[r"\p{N}", GPT2], false, false),
    (&["deepseek-coder"], &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"], false, false),
    (&["deepseek-v3", "hunyuan-dense"], &[r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3], false, false),
    (&["falcon"], &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"], false, false),
    (&["poro-chat", "bloom", "gpt3-finnish"], &[r" ?[^(\s|.,!?…。，、।۔،)]+"], false, false),
    (&["chatglm-bpe", "glm4"], &[LLAMA3], false, false),
    (&["tekken"], &[TEKKEN], true, true),
    (&["gpt-4o", "llama4"], &[GPT4O], false, false),
    (&["seed-coder"], &[SEED_CODER], false, false),
    (&["grok-2"], &[QWEN2], false, false),
];

/// The pre-tokenizer a GGUF names, if loopc knows it.
pub fn find(name: &str) -> Option<PreTokenizer> {
    FAMILIES.iter().find_map(|(names, regexes, ignore_merges, add_bos)| {
        let name = names.iter().copied().find(|n| *n == name)?;
        Some(PreTokenizer { name, regexes, ignore_merges: *ignore_merges, add_bos: *add_bos })
    })
}

/// The names loopc knows, for error messages.
pub fn known_names() -> Vec<&'static str> {
    FAMILIES.iter().flat_map(|(names, ..)| names.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expression_compiles_with_the_tokenizers_regex_engine() {
        for (names, regexes, ..) in FAMILIES {
            for r in *regexes {
                let split = tokenizers::pre_tokenizers::split::Split::new(
                    tokenizers::pre_tokenizers::split::SplitPattern::Regex((*r).to_string()),
                    tokenizers::SplitDelimiterBehavior::Isolated,
                    false,
                );
                assert!(split.is_ok(), "pre-tokenizer {names:?}: `{r}` does not compile");
            }
        }
    }

    #[test]
    fn aliases_resolve_to_their_family() {
        assert_eq!(find("llama3").map(|p| p.regexes), find("llama-bpe").map(|p| p.regexes));
        assert!(find("llama-bpe").is_some_and(|p| p.ignore_merges && p.add_bos));
        assert!(find("qwen2").is_some_and(|p| !p.ignore_merges));
        assert_eq!(find("no-such-thing"), None);
        assert!(known_names().contains(&"smollm"));
    }
}
