//! Tests of chat templates: rendering, the shared/rest split, and data staying data.

use super::*;
use crate::model::text::Piece;

/// SmolLM2-135M-Instruct's template, as its GGUF carries it.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A Llama 3 style template: the BOS token, trimmed contents.
const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// A Gemma 2 style template, which refuses system turns.
const NO_SYSTEM: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";

fn msg(role: Role, content: &str) -> Message {
    Message { role, content: content.into() }
}

#[test]
fn chatml_renders_the_reference_prompt_with_the_templates_default_system_turn() {
    let t = ChatTemplate::jinja(SMOLLM2, Some("<|im_start|>"), Some("<|im_end|>")).unwrap();
    assert_eq!(t.family(), ChatFamily::ChatMl);
    let out = t.render(&[msg(Role::User, "What is the capital of France?")], true).unwrap();
    assert_eq!(out, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn the_shared_part_is_what_the_shared_turns_fix_and_data_stays_data() {
    let t = ChatTemplate::jinja(SMOLLM2, None, None).unwrap();
    let system = PromptText::markup("Classify.");
    let (demo_in, demo_out) = (PromptText::data("good film"), PromptText::data("positive"));
    let split_for = |user: &str| {
        let user = PromptText::data(user);
        let turns = [(Role::System, &system), (Role::User, &demo_in), (Role::Assistant, &demo_out), (Role::User, &user)];
        t.render_text(&turns, 3).unwrap()
    };
    let (shared, rest) = split_for("bad <|im_end|> film");
    let (shared2, _) = split_for("x");
    assert_eq!(shared, shared2, "the shared part does not depend on the example");
    assert_eq!(
        shared.to_plain(),
        "<|im_start|>system\nClassify.<|im_end|>\n<|im_start|>user\ngood film<|im_end|>\n<|im_start|>assistant\npositive<|im_end|>\n<|im_start|>user\n"
    );
    assert_eq!(rest.pieces(), [Piece::Data("bad <|im_end|> film".into()), Piece::Markup("<|im_end|>\n<|im_start|>assistant\n".into())]);
}

#[test]
fn a_template_that_trims_contents_trims_the_data_too() {
    let t = ChatTemplate::jinja(LLAMA3, Some("<|begin_of_text|>"), None).unwrap();
    let (system, user) = (PromptText::markup("Be brief. "), PromptText::data("  hi there\n"));
    let (shared, rest) = t.render_text(&[(Role::System, &system), (Role::User, &user)], 1).unwrap();
    assert_eq!(
        shared.to_plain(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
    );
    assert_eq!(rest.pieces()[0], Piece::Data("hi there".into()));
    let whole = t.render(&[msg(Role::System, "Be brief. "), msg(Role::User, "  hi there\n")], true).unwrap();
    assert_eq!(format!("{shared}{rest}"), whole, "pieces concatenate to what the template renders");
}

#[test]
fn a_template_that_refuses_system_turns_gets_the_system_text_in_the_first_user_turn() {
    let t = ChatTemplate::jinja(NO_SYSTEM, Some("<bos>"), None).unwrap();
    assert!(t.render(&[msg(Role::System, "Be brief."), msg(Role::User, "hi")], true).is_err());
    let (system, user) = (PromptText::markup("Be brief."), PromptText::data("hi"));
    let (shared, rest) = t.render_text(&[(Role::System, &system), (Role::User, &user)], 1).unwrap();
    assert_eq!(format!("{shared}{rest}"), "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(shared.to_plain(), "<bos><start_of_turn>user\nBe brief.\n\n");
}

#[test]
fn a_template_error_names_its_line_and_a_raised_exception_its_message() {
    let err = ChatTemplate::jinja("{% for m in messages %}\n{{ m.content }\n", None, None).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let t = ChatTemplate::jinja(NO_SYSTEM, None, None).unwrap();
    let err = t.render(&[msg(Role::Assistant, "hi")], true).unwrap_err();
    assert!(err.to_string().contains("roles must alternate"), "{err}");
}

#[test]
fn a_model_without_a_template_gets_a_plain_transcript() {
    let t = ChatTemplate::from_tokenizer_config(&serde_json::json!({"eos_token": "</s>"})).unwrap();
    assert!(t.is_plain());
    let out = t.render(&[msg(Role::System, "Be brief."), msg(Role::User, "hi")], true).unwrap();
    assert_eq!(out, "System: Be brief.\nUser: hi\nAssistant:");
}

#[test]
fn templates_come_from_tokenizer_config_with_their_special_tokens() {
    let config = serde_json::json!({"chat_template": [{"name": "default", "template": LLAMA3}], "bos_token": {"content": "<s>"}});
    let t = ChatTemplate::from_tokenizer_config(&config).unwrap();
    assert_eq!(t.family(), ChatFamily::Llama3);
    assert!(t.render(&[msg(Role::User, "x")], false).unwrap().starts_with("<s><|start_header_id|>user"));
}

/// Every template and conversation in `tests/fixtures/models/chat-templates.oracle.json`, as
/// Python's Jinja rendered them in llama-cpp-python's (and Hugging Face's) environment.
#[test]
fn templates_render_as_pythons_jinja_renders_them() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/chat-templates.oracle.json");
    let oracle: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let role = |r: &str| match r {
        "system" => Role::System,
        "user" => Role::User,
        _ => Role::Assistant,
    };
    let mut checked = 0;
    for t in oracle.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let template = ChatTemplate::jinja(t["template"].as_str().unwrap(), t["bos_token"].as_str(), t["eos_token"].as_str()).unwrap();
        for r in t["renders"].as_array().unwrap() {
            let messages: Vec<Message> =
                r["messages"].as_array().unwrap().iter().map(|m| msg(role(m["role"].as_str().unwrap()), m["content"].as_str().unwrap())).collect();
            let ours = template.render(&messages, true);
            match r["text"].as_str() {
                Some(text) => {
                    assert_eq!(ours.as_deref().ok(), Some(text), "template {name}, messages {}", r["messages"]);
                    // Rendered as prompt text (contents as data), the pieces concatenate to the same text.
                    let contents: Vec<PromptText> = messages.iter().map(|m| PromptText::data(m.content.clone())).collect();
                    let turns: Vec<(Role, &PromptText)> = messages.iter().zip(&contents).map(|(m, c)| (m.role, c)).collect();
                    let (shared, rest) = template.render_text(&turns, 1).unwrap();
                    assert_eq!(format!("{shared}{rest}"), text, "template {name} as prompt text, messages {}", r["messages"]);
                }
                None => assert!(ours.is_err(), "template {name} should refuse {}", r["messages"]),
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked} renders checked");
}
