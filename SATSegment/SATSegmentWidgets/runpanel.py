"""Apply/Cancel: what is checked before a run, its progress, and how its end is shown."""

from __future__ import annotations

import slicer
from slicer.i18n import tr as _

from .part import PanelPart

SCAN_TRANSFERS = ("reading from the PACS", "uploading")  # server states saying how the scan gets there


class RunPanel(PanelPart):
    """Starts runs (on this computer or the server), shows their progress and outcome."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.lastOutcome = None  # the last run's result, for "Undo last result" (until the next run)

    def connect(self) -> None:
        self.ui.applyButton.clicked.connect(self.onApplyOrCancel)

    def onRunShortcut(self) -> None:
        if not self.logic.running and self.ui.applyButton.enabled:
            self.onApplyOrCancel()

    def onApplyOrCancel(self) -> None:
        if self.logic.running:
            self.widget.appendLog(_("Cancelling..."))
            self.logic.cancel()
            return
        if self.ui.promptLineEdit.text.strip() and not self.widget.prompts.onPromptEntered():
            return  # the typed structure is part of the request; it was not added
        node = self.node
        server = self.widget.compute.serverChoice()
        if server is None and not self._packagesHere():
            return
        if node.freeTextPrompts and not slicer.util.confirmYesNoDisplay(
                _("These prompts are not in SAT's vocabulary: {prompts}. Run them anyway?").format(
                    prompts=", ".join(node.freeTextPrompts))):
            return
        if server is None and not self._modelHere():
            return
        try:
            self.logic.run(node, server)
        except Exception as exc:
            slicer.util.errorDisplay(self.refusalText(exc))
            return
        self.lastOutcome = None
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.text = _("Contacting {url}...").format(url=server.url) if server else _("Starting...")
        self.widget.setProcessingState()

    def _packagesHere(self) -> bool:
        """This computer has the Python packages SAT needs (else the user is told to install them)."""
        missingPackages = self.logic.dependencies.missing()
        if missingPackages:
            slicer.util.errorDisplay(_("Install the Python packages SAT needs first (Setup, Install...): {packages}").format(
                packages=", ".join(missingPackages)))
        return not missingPackages

    def _modelHere(self) -> bool:
        """The chosen model is installed here (else the user may go and download it)."""
        missingModel = self.logic.models.missing(self.node.model)
        if missingModel and slicer.util.confirmYesNoDisplay(
                _("{model} is not installed. Download it now?").format(model=missingModel)):
            self.widget.setupPanel.onDownloadModel()
        return not missingModel

    def refusalText(self, exc: Exception) -> str:
        if getattr(exc, "code", "") == "output_transform":
            return _("The segmentation '{segmentation}' is under another transform than the volume '{volume}', so the "
                     "results would not overlay the scan. Choose 'Create new segmentation on Apply', or put both under "
                     "the same transform.").format(**exc.params)
        return _("Could not start SAT: {error}").format(error=exc)

    def onRunProgress(self, event: dict) -> None:
        if event.get("stage") == "server":
            self.ui.statusLabel.text = self.serverStateText(event)
            if event.get("fraction") is not None:  # the running job's progress, when the server tells it
                self.ui.progressBar.setValue(int(100 * event["fraction"]))
            if event.get("state") in SCAN_TRANSFERS:  # the Log keeps how the scan reached the server, and why
                self.widget.appendLog(_("Server: {message}").format(message=event.get("message", "")))
            return
        self.ui.progressBar.setValue(int(100 * (event.get("fraction") or 0)))
        eta = event.get("eta")
        remaining = _(", about {seconds} s left").format(seconds=int(eta)) if eta is not None else ""
        self.ui.statusLabel.text = f"{event.get('stage', '')}: {event.get('message', '')}{remaining}"

    @staticmethod
    def serverStateText(event: dict) -> str:
        """Where the job is on the server, in words."""
        state = event.get("state")
        if state == "queued":
            return _("Server: waiting, {count} jobs ahead.").format(count=event.get("position", 0))
        if state == "running":
            return _("Server: running.")
        if state == "reading from the PACS":
            return _("Server: reading the series from its PACS (nothing uploaded).")
        if state == "uploading":
            return _("Server: uploading the volume.")
        return _("Server: {state}.").format(state=state)

    def onRunFinished(self, outcome) -> None:
        for warning in outcome.warnings:
            self.widget.appendLog(_("Warning: {message}").format(message=warning.get("message", "")))
        if outcome.status == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
            self.ui.progressBar.setValue(0)
        elif outcome.status == "error":
            self.ui.statusLabel.text = _("Failed.")
            self.showRunError(outcome.error)
        else:
            self.ui.progressBar.setValue(100)
            self.lastOutcome = outcome
            self.node.outputSegmentation = outcome.segmentationNode
            self.ui.statusLabel.text = self.summaryText(outcome)
        self.widget.setProcessingState()

    @staticmethod
    def summaryText(outcome) -> str:
        report = outcome.report
        summary = _("{added} segments added to '{segmentation}'.").format(
            added=len(report.added), segmentation=outcome.segmentationNode.GetName())
        if report.keptBoth:
            summary += " " + _("Kept your segments: {names}.").format(names=", ".join(report.keptBoth))
        if report.skipped:
            summary += " " + _("Skipped: {names}.").format(names=", ".join(report.skipped))
        if outcome.outputReplaced:
            summary += " " + _("The chosen segmentation was deleted during the run, so a new one holds the results.")
        return summary

    def showRunError(self, error: dict) -> None:
        code = error.get("code")
        message = error.get("message", _("Unknown error"))
        if code == "input_removed":
            message = _("The input volume was deleted during the run, so the results were not added.")
        elif code in ("internal_error", "result_unreadable") and "detail" in error:  # the runner's own errors
            message = _("The results could not be added to the scene: {detail}").format(detail=error["detail"])
        elif code == "out_of_memory":
            message += "\n\n" + _("Try: draw an ROI around the structures, choose SAT-Nano, or run on the CPU.")
        elif code == "model_error" and self.widget.compute.serverChoice() is None and self.logic.models.missing(self.node.model):
            if slicer.util.confirmYesNoDisplay(message + "\n\n" + _("Download the model now?")):
                self.widget.setupPanel.onDownloadModel()
            return
        if error.get("suggestions"):
            message += "\n\n" + _("Did you mean: {suggestions}?").format(suggestions=", ".join(error["suggestions"][:5]))
        slicer.util.errorDisplay(message, detailedText=error.get("hint", ""))
