//! Google Gemini `generateContent`, `streamGenerateContent?alt=sse` and `countTokens`.
//!
//! The model and the streaming flag come from the URL ([`ParseContext`]); the body never
//! names them (a `countTokens` body may wrap a `generateContentRequest` that does). Field
//! names are read in camelCase or snake_case (Google's REST examples use both). Streams
//! are data-only SSE frames, each a whole `GenerateContentResponse` chunk; the last
//! candidate chunk carries `finishReason` and `usageMetadata`. Bodies are the same for
//! `/v1` and `/v1beta`; `build_request` uses `parametersJsonSchema` / `responseJsonSchema`,
//! so an upstream should be called on `/v1beta`.
//!
//! Lossy mappings and choices (everything else maps one to one):
//!
//! | field | what happens |
//! |---|---|
//! | `generationConfig.topK`, `seed`, `presencePenalty`, `frequencyPenalty`, `responseLogprobs`, `logprobs`, `mediaResolution`, `enableEnhancedCivicAnswers` | ignored (no canonical field) |
//! | `safetySettings`, `labels` | ignored |
//! | `cachedContent`, `candidateCount` > 1, `responseMimeType` other than JSON/text, `responseModalities` other than TEXT, `speechConfig`, `imageConfig` | 400 naming the field |
//! | `tools[].googleSearch` / `googleSearchRetrieval` / `codeExecution` / `urlContext` / `retrieval` / any non-function tool | 400 naming the tool |
//! | parts `executableCode`, `codeExecutionResult`, `videoMetadata`; non-image `inlineData` / `fileData` | 400 naming the part / MIME type |
//! | `parameters` / `responseSchema` (OpenAPI subset) | converted to JSON Schema: types lowercased, `nullable` → `["t","null"]`, numeric strings → numbers, `propertyOrdering` dropped |
//! | `parametersJsonSchema` / `responseJsonSchema` | passed through; only Gemini's upper-case type names (`"OBJECT"`, sent by Gemini CLI) are lowercased |
//! | `functionDeclarations[].response` / `responseJsonSchema` / `behavior` | ignored (no canonical output schema) |
//! | `functionCallingConfig` `VALIDATED` | `Auto` (+ tools filtered to `allowedFunctionNames`) |
//! | `functionCallingConfig` `ANY` + several `allowedFunctionNames` | `Required` + tools filtered to those names; `AUTO` ignores the names |
//! | `thinkingConfig.thinkingBudget` 0 / -1 / n | disabled / enabled, no budget / budget n; `thinkingLevel` → `effort` (lowercase) |
//! | `thoughtSignature` on a non-thought text/image part | a `Thinking{text:"", signature}` part before it (on `functionCall` → `ToolCall.signature`) |
//! | `functionCall` without `id` | id `call_<name>_<ordinal>` (ordinal over the request), deterministic |
//! | `functionResponse.id` | kept when it names an earlier call; else the call id of the oldest unanswered call with that name in the latest model turn (Gemini CLI sends its own ids), then the given id |
//! | `functionResponse.response` | `{"content"\|"output"\|"result": string}` → that text; `{"error": string}` → that text with `is_error`; else its JSON text; `functionResponse.parts` images → result images |
//! | `systemInstruction` parts | texts joined with `\n`; role ignored; a plain string is accepted |
//! | `role` missing / `function` / `tool` | `user` |
//! | build: leading `Role::System` messages | appended to `systemInstruction` |
//! | build: later `Role::System` messages | a `user` turn `System: <text>` in place (Gemini has no mid-conversation system role) |
//! | build: `functionCall.id` / `functionResponse.id` | not sent (the Gemini API rejects `id` in requests); pairing is by order and name |
//! | build: `ToolResult` | `functionResponse {name, response:{"content": text}}` (`{"error": text}` when `is_error`); its images follow as sibling parts at the end of the turn |
//! | build: URL images | `data:` URLs → `inlineData`; others → `fileData` with the MIME type guessed from the extension (default `image/jpeg`) |
//! | build: `RedactedThinking`, `user`, `parallel_tool_calls` | dropped (Gemini has no equivalent) |
//! | build: `ResponseFormat::JsonSchema` name / strict | dropped (`responseJsonSchema` carries only the schema) |
//! | build: thinking disabled / enabled without budget / effort only | `thinkingBudget: 0` / `-1` / `thinkingLevel` for `gemini-3…` and later, else (2.5 rejects `thinkingLevel`, and unknown names may be 2.5) `thinkingBudget` 512 (minimal), 2048 (low), 8192 (medium) or 24576 (high) |
//! | build (model `gemini-3…` and later): a model turn whose `functionCall`s have no `thoughtSignature` | the first call gets Google's documented sentinel `skip_thought_signature_validator` (history from another API would otherwise be a 400) |
//! | build: empty messages, empty text parts | skipped (Gemini rejects empty parts) |
//! | response / stream: reasoning signed by another API (Anthropic thinking, redacted thinking, Responses reasoning) | its text shown as thought parts, and the whole of it (text, signatures, redacted data) as one block envelope ([`crate::formats::reasoning`]) in the `thoughtSignature` of the next `functionCall` (else of a thought part of its own at the end), because Gemini clients keep signatures on calls but not thought text; sent back, it is restored where it was: at the start of the model turn when it rode on the turn's first call, else right before its call |
//! | request: `thoughtSignature` `ailurus-redacted:<data>` (older Ailurus answers) | `RedactedThinking` |
//! | build: thinking signed by another API | not sent (Gemini rejects it); its text becomes a plain text part |
//! | response: `ThinkingSignature` | attached to the next text / functionCall part, else a part `{text:"", thought:true, thoughtSignature}` |
//! | response: tool call arguments that are not a JSON object | `args: {}` |
//! | response / build: a tool call without a name | `functionCall.name: "unknown_function"` (Gemini requires a name) |
//! | response: `tool_use` / `stop_sequence` finish | `STOP` (Gemini reports function calls and stop sequences as `STOP`) |
//! | response: `cache_write_tokens` | counted in `promptTokenCount` (Gemini has no cache-write count) |
//! | upstream: `toolUsePromptTokenCount` | counted as input |
//! | upstream: finish `OTHER` / unknown | `Stop` (`ToolUse` after a function call); `LANGUAGE`, `IMAGE_*` → `ContentFilter` |
//! | upstream: `MALFORMED_FUNCTION_CALL`, `UNEXPECTED_TOOL_CALL`, `TOO_MANY_TOOL_CALLS` | error 502 |
//! | upstream: output `inlineData` / `fileData` / `executableCode` parts | error 502 naming the part (no canonical image output) |
//! | upstream: `functionCall` without `id` | id `call_<nuid>` (unique across turns) |
//! | render_error 402 | `PERMISSION_DENIED` (not retryable; `RESOURCE_EXHAUSTED` would make Gemini CLI retry / fall back) |
//!
//! The files, one direction each: `request` reads a client request, `response` renders a
//! client answer or error, `encoder` writes a client stream; `upstream_request` builds the
//! upstream body, `upstream_response` reads an upstream answer and `decoder` an upstream
//! stream (both through `chunk`). `parts` writes canonical parts as Gemini parts (for a
//! client and for an upstream); `schema` converts Gemini schemas to JSON Schema.

mod chunk;
mod decoder;
mod encoder;
mod parts;
mod request;
mod response;
mod schema;
mod upstream_request;
mod upstream_response;

#[cfg(test)]
mod tests;

pub use decoder::{decoder, Decoder};
pub use encoder::{encoder, Encoder};
pub use request::parse_request;
pub use response::{render_count_tokens, render_error, render_response};
pub use upstream_request::build_request;
pub use upstream_response::parse_response;

use super::walk::{Fields, Obj};

/// Prefix of a `thoughtSignature` that carries another API's redacted / encrypted reasoning.
const REDACTED_PREFIX: &str = "ailurus-redacted:";

/// `max_output_tokens` → `maxOutputTokens`.
fn to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An integer field of proto3 JSON read leniently (a number without fraction or a decimal
/// string, under its camelCase or snake_case key): absent, `null` or anything else is `None`.
fn int_of(o: &Obj, key: &str) -> Option<i64> {
    Fields::proto3(o, "").i64(key).ok().flatten()
}

/// A model name without a leading `/` or `models/`.
fn bare_model(model: &str) -> String {
    let m = model.trim().trim_start_matches('/');
    m.strip_prefix("models/").unwrap_or(m).to_string()
}

/// The image MIME type a URI's extension names, if it names one.
fn guess_image_mime(uri: &str) -> Option<&'static str> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri).to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

/// A fresh response / call id.
fn new_id() -> String {
    nuid::next().to_string()
}
