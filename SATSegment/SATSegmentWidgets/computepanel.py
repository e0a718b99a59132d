"""The Compute on section: this computer or a SATSegment server (address, token, Test connection).

The address and the choice are remembered in Slicer's settings (per user, not in the scene); the token only
while Slicer runs. Nothing is sent anywhere until the user runs SAT with a server chosen.
"""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from SATSegmentSlicerLib.logic import ServerChoice

from .part import PanelPart

HERE, SERVER = "local", "server"
SETTINGS_COMPUTE_ON = "SATSegment/ComputeOn"
SETTINGS_SERVER_URL = "SATSegment/ServerURL"


class ComputePanel(PanelPart):
    """Where SAT runs, and the server's address and token."""

    def connect(self) -> None:
        ui = self.ui
        ui.computeOnComboBox.addItem(_("This computer"), HERE)
        ui.computeOnComboBox.addItem(_("Server"), SERVER)
        settings = qt.QSettings()
        ui.serverUrlLineEdit.text = str(settings.value(SETTINGS_SERVER_URL, "") or "")
        ui.computeOnComboBox.setCurrentIndex(max(0, ui.computeOnComboBox.findData(settings.value(SETTINGS_COMPUTE_ON, HERE))))
        ui.serverPrivacyLabel.text = _(
            "With Server, the volume is sent to the address above, and only there: patient data leave this "
            "computer only for the server you typed. With This computer, nothing leaves it.")
        ui.computeOnComboBox.currentIndexChanged.connect(self.onComputeOnChanged)
        ui.serverUrlLineEdit.editingFinished.connect(self.onServerUrlEdited)
        ui.serverUrlLineEdit.textChanged.connect(self.widget.setProcessingState)
        ui.testConnectionButton.clicked.connect(self.onTestConnection)
        self.onComputeOnChanged()

    @property
    def onServer(self) -> bool:
        return self.ui.computeOnComboBox.currentData == SERVER

    def serverChoice(self) -> ServerChoice | None:
        """The server runs go to, or None to run on this computer."""
        if not self.onServer:
            return None
        return ServerChoice(self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text.strip())

    def updateState(self, running: bool) -> None:
        """The compute controls for the run (part of `setProcessingState`)."""
        ui = self.ui
        ui.computeOnComboBox.enabled = not running
        for widget in (ui.serverUrlLineEdit, ui.serverTokenLineEdit):
            widget.enabled = self.onServer and not running
        ui.testConnectionButton.enabled = self.onServer and not running and bool(ui.serverUrlLineEdit.text.strip())

    def onComputeOnChanged(self, *unused) -> None:
        """Remember the choice; with a server, this computer's setup (packages, model) is not needed: fold it."""
        qt.QSettings().setValue(SETTINGS_COMPUTE_ON, self.ui.computeOnComboBox.currentData)
        if self.onServer:
            self.ui.computeCollapsibleButton.collapsed = False
        self.ui.setupCollapsibleButton.collapsed = self.onServer or self.widget.setupPanel.ready
        self.ui.serverInfoLabel.text = ""
        self.widget.setProcessingState()

    def onServerUrlEdited(self) -> None:
        qt.QSettings().setValue(SETTINGS_SERVER_URL, self.ui.serverUrlLineEdit.text.strip())

    def onTestConnection(self) -> None:
        """Ask the server for its version and models (nothing of the scene is sent)."""
        from SATSegmentSlicerLib.remote import RemoteError

        server = self.serverChoice()
        self.onServerUrlEdited()
        try:
            with slicer.util.WaitCursor():
                info = self.logic.testConnection(server)
        except RemoteError as exc:
            self.ui.serverInfoLabel.text = _("Not usable: {message}").format(message=exc.message)
            slicer.util.errorDisplay(exc.message, detailedText=exc.hint, windowTitle=_("Test connection"))
            return
        self.ui.serverInfoLabel.text = _("Connected: SATSegment {version} on the server, models: {models}.").format(
            version=info.get("satsegment_version", "?"), models=", ".join(info.get("models", [])))
