"""One module per stage. Each is `apply(batch, event, attribution) -> attribution`, run in order
by `cairn.pipeline.runner`; a stage that raises sends the event to the dead-letter list."""
