"""Runs the SATSegment widget for real under PySide6, as Slicer runs it under PythonQt.

* `pythonqt`: the `qt` module of PythonQt on top of PySide6: Qt properties as Python attributes,
  `connect("signal(args)", slot)`, `.ui` files through QUiLoader, PythonQt's return conventions; anything
  it does not know raises instead of being accepted silently.
* `ctkwidgets`, `mrmlwidgets`: real Qt widgets standing in for the CTK and qMRML widgets of the .ui,
  talking to the slicer-core MRML scene (node selectors list the scene's nodes, the segments table follows
  the segmentation's segments, the 3D button builds closed surfaces).
* `slicerapp`: what the Slicer application adds to the `slicer` package (app, mrmlScene, modules, i18n,
  ScriptedLoadableModule, parameterNodeWrapper); `slicer.util` is Slicer's own, from the slicer-core wheel.
* `panel`: loads SATSegment.py like Slicer does and drives it: dialogs answered by a scripted user,
  screenshots of the panel.
"""
