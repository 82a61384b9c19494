"""Entry points: one blueprint per trigger family, each a thin parse → load → decide → commit → dispatch."""
