"""The status page of DESIGN.md section 8, served by the daemon's metrics server and by
`audsync serve`: see page.StatusPage."""

from .page import Answer, StatusPage, is_page_path

__all__ = ["Answer", "StatusPage", "is_page_path"]
