"""The management side: the rules of every change an operator or application makes (CLI and API alike)."""
