"""The compiler's passes, one module each; `compilation.PASSES` orders them."""
