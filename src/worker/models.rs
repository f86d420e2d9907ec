//! `GET /v1/models` in each format's shape, answered from the router's model list.

use crate::formats::Format;
use serde_json::json;

/// The model list body in `format`'s shape.
pub fn render(format: Format, models: &[String]) -> Vec<u8> {
    let v = match format {
        Format::OpenAiChat | Format::OpenAiResponses => json!({
            "object": "list",
            "data": models.iter().map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "ailurus"})).collect::<Vec<_>>(),
        }),
        Format::AnthropicMessages => json!({
            "data": models.iter().map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"})).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        }),
        Format::GeminiGenerate => json!({
            "models": models.iter().map(|m| json!({
                "name": format!("models/{m}"),
                "baseModelId": m,
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 65_536,
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
            })).collect::<Vec<_>>(),
        }),
    };
    v.to_string().into_bytes()
}
