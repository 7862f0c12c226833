"""Stage-by-stage timings of the loader, the training step and the evaluation (`fastinv profile`).

`timing` holds the stage timer, `report` the table and JSON of a profile; `loader`, `train` and
`eval` are the three profilers. Import the module you need: this package imports nothing itself.
"""
