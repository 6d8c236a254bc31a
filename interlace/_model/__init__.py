"""The pandas edge, inbound: formula and data frame to a validated design, and a design
fitted to a ``ModelFit`` record. See the package map in ``interlace``.
"""
