"""The same models and epochs in PyTorch, for side-by-side numbers (optional extra [torch])."""
