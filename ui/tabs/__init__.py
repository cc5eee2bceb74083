"""One module per tab: ``build(ctx) -> <Tab>Tab`` (a dataclass of its components) and ``wire(ctx, tab)``."""
