"""What every part of the panel reaches through the module widget: its ui, logic and parameter node."""

from __future__ import annotations


class PanelPart:
    """One part of the panel; `widget` is the SATSegmentWidget that owns it."""

    def __init__(self, widget) -> None:
        self.widget = widget

    @property
    def ui(self):
        return self.widget.ui

    @property
    def logic(self):
        return self.widget.logic

    @property
    def node(self):
        """The parameter node (None while the module is not entered)."""
        return self.widget._parameterNode
