"""Helpers shared by every stage: params/profiles, atomic IO, errors, environment.

Stages never import each other; what they share lives here.
"""
