"""Instructor and CI tooling: run the lectures, export slides, generate and grade exercises.

Never imported by ``import saliency_helpers``: students need none of it. Its command line is
``saliency-course`` (:mod:`saliency_helpers.course.cli`); it needs the ``[instructor]`` extra
(``pip install -e ".[instructor]"``).
"""
