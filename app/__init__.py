"""The Gradio demo: settings, input guard, generation service, handlers and layout (see app.server)."""
