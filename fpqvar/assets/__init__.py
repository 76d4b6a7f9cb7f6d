"""The shipped default model, its classifier and reference statistics."""
