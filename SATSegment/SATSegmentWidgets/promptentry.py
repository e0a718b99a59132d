"""The Structures section: the prompt box with completion, presets, a pasted structure list, and the list."""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from SATSegmentSlicerLib.prompts import PromptList

from .part import PanelPart


class PromptEntry(PanelPart):
    """Typed, completed, preset and pasted structures into the parameter node's prompt list."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.suggestionTerms = {}

    def connect(self) -> None:
        ui = self.ui
        self.completerModel = qt.QStringListModel()
        self.completer = qt.QCompleter(self.completerModel, ui.promptLineEdit)
        self.completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        # the vocabulary already matched synonyms and substrings: show its list as it is, in its order
        self.completer.setCompletionMode(qt.QCompleter.UnfilteredPopupCompletion)
        ui.promptLineEdit.setCompleter(self.completer)
        self.completer.connect("activated(QString)", self.onSuggestionChosen)
        ui.promptLineEdit.textEdited.connect(self.onPromptEdited)
        ui.promptLineEdit.returnPressed.connect(self.onPromptEntered)
        ui.addPromptButton.clicked.connect(self.onPromptEntered)
        ui.removePromptButton.clicked.connect(self.onRemoveSelectedPrompts)
        ui.clearPromptsButton.clicked.connect(self.onClearPrompts)
        ui.pasteListButton.clicked.connect(self.onPasteList)
        ui.presetComboBox.addItem(_("Add a preset..."), "")
        for name in self.logic.vocabulary.presets():
            ui.presetComboBox.addItem(name, name)
        ui.presetComboBox.connect("activated(int)", self.onPresetChosen)
        deleteShortcut = qt.QShortcut(qt.QKeySequence(qt.QKeySequence.Delete), ui.promptListWidget)
        deleteShortcut.setContext(qt.Qt.WidgetShortcut)
        deleteShortcut.connect("activated()", self.onRemoveSelectedPrompts)

    def showPrompts(self) -> None:
        """The list widget from the parameter node; free text marked as such."""
        node = self.node
        self.ui.promptListWidget.clear()
        for prompt in node.prompts:
            item = qt.QListWidgetItem(prompt)
            item.setData(qt.Qt.UserRole, prompt)
            if prompt in node.freeTextPrompts:
                item.setText(_("{prompt} (not in SAT's vocabulary)").format(prompt=prompt))
                item.setForeground(qt.QBrush(qt.QColor("darkorange")))
            self.ui.promptListWidget.addItem(item)

    def _prompts(self) -> PromptList:
        return PromptList.of(self.node.prompts, self.node.freeTextPrompts)

    def _setPrompts(self, prompts: PromptList) -> None:
        node = self.node
        wasModifying = node.StartModify()
        node.freeTextPrompts = list(prompts.freeText)
        node.prompts = list(prompts.prompts)
        node.EndModify(wasModifying)

    def onPromptEdited(self, text: str) -> None:
        suggestions = self.logic.vocabulary.suggestions(text, self.node.modality)
        self.suggestionTerms = {suggestion.display: suggestion.term for suggestion in suggestions}
        self.completerModel.setStringList(list(self.suggestionTerms))
        if suggestions:
            self.completer.complete()
        self.widget.setProcessingState()

    def onSuggestionChosen(self, display: str) -> None:
        term = self.suggestionTerms.get(display)
        if term:
            self._setPrompts(self._prompts().adding([term]))
            qt.QTimer.singleShot(0, self.ui.promptLineEdit.clear)  # after QCompleter wrote the text
            self.ui.promptWarningLabel.text = ""

    def onPromptEntered(self) -> bool:
        """Resolve the typed text against SAT's vocabulary and add it; returns False if nothing was added."""
        text = self.ui.promptLineEdit.text.strip()
        if not text:
            return False
        term = self.suggestionTerms.get(text)  # Enter on a completion: the line edit holds its display text
        suggestions = []
        if term is None:
            term, suggestions = self.logic.vocabulary.resolve(text, self.node.modality)
        if term:
            self._setPrompts(self._prompts().adding([term]))
            self.ui.promptLineEdit.clear()
            self.ui.promptWarningLabel.text = ""
            return True
        hint = _("Did you mean: {suggestions}?").format(suggestions=", ".join(suggestions)) if suggestions else ""
        self.ui.promptWarningLabel.text = _("'{text}' is not in SAT's vocabulary. {hint}").format(text=text, hint=hint)
        confirmed = slicer.util.confirmYesNoDisplay(
            _("'{text}' is not a structure SAT was trained on, so its result is unreliable. {hint}\n\n"
              "Add it anyway as free text?").format(text=text, hint=hint), windowTitle=_("Unknown structure"))
        if confirmed:
            self._setPrompts(self._prompts().adding([text], [text]))
            self.ui.promptLineEdit.clear()
        return confirmed

    def onPasteList(self) -> None:
        """Add the structures of a pasted list; entries SAT does not know are listed with suggestions, never added."""
        text = qt.QInputDialog.getMultiLineText(
            self.widget.parent, _("Paste a structure list"),
            _("One structure per line, or separated by commas or semicolons (TG-263 or English names), "
              "or a planning system's CSV export with a 'Structure' or 'ROI Name' column:"))
        if not text or not text.strip():
            return
        terms, unresolved = self.logic.vocabulary.resolveList(text, self.node.modality)
        self._setPrompts(self._prompts().adding(terms))
        self.ui.promptWarningLabel.text = ""
        if unresolved:
            lines = [_("{entry} (did you mean: {suggestions}?)").format(entry=entry, suggestions=", ".join(suggestions[:5]))
                     if suggestions else entry for entry, suggestions in unresolved.items()]
            self.ui.promptWarningLabel.text = _("Not added (not in SAT's vocabulary): {entries}").format(entries="; ".join(unresolved))
            slicer.util.warningDisplay(
                _("{added} structures were added. These {count} entries are not in SAT's vocabulary and were not "
                  "added; correct them and add them again:\n\n{entries}").format(
                    added=len(terms), count=len(unresolved), entries="\n".join(lines)),
                windowTitle=_("Structures not added"))

    def onRemoveSelectedPrompts(self) -> None:
        selected = [item.data(qt.Qt.UserRole) for item in self.ui.promptListWidget.selectedItems()]
        self._setPrompts(self._prompts().removing(selected))

    def onClearPrompts(self) -> None:
        self._setPrompts(PromptList())

    def onPresetChosen(self, index: int) -> None:
        name = self.ui.presetComboBox.itemData(index)
        if name:
            self._setPrompts(self._prompts().adding(self.logic.vocabulary.presets()[name]))
        self.ui.presetComboBox.setCurrentIndex(0)
