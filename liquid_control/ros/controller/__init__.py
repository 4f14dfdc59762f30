"""The liquid controller node: node.py (lifecycle and wiring), params.py (the parameter table and checks),
sim_clock.py (the /clock ticker), step_debug.py (~/step_debug records), run.py (the process's main).
The control law it runs is core/control.py."""
