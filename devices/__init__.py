"""Rig side: the pose-source contract (`devices.driver`), the rig agent that speaks the wire
protocol (`devices.agent`), a minimal deterministic driver (`devices.minimal`) and simulated
trainees (`devices.sim`).

Kept import-light on purpose: ``import devices`` loads nothing heavy; import the submodules.
"""
