"""Helpers shared by test rooms (tiny models built on the fly; nothing downloaded)."""
