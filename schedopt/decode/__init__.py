"""Decoding: answers from prompts with a schedule and a rule (`schedopt.generate`)."""

from ._generate import generate as generate
