"""The labelling server: FastAPI over a :class:`~embodied.labelling.queue.LabellingSession`, one plain HTML page.

Routes: ``GET /`` the page; ``GET /api/next?labeller=`` the next query; ``GET /api/episode/{e}.png`` an
episode's frames as one strip; ``POST /api/answer`` {query, ranking, labeller}; ``POST /api/undo`` {labeller};
``GET /healthz``. Bad requests get 4xx with a message; every answer is in the store before its response is sent.
"""

# no `from __future__ import annotations`: FastAPI reads the request models from the handlers' annotations at runtime
import html
from importlib import resources

from embodied.labelling.queue import AlreadyAnswered, LabellingSession


def make_app(session: LabellingSession):
    """The FastAPI app serving ``session``."""
    from fastapi import FastAPI, HTTPException, Response
    from fastapi.responses import HTMLResponse
    from pydantic import BaseModel, Field

    app = FastAPI(title="embodied label", docs_url=None, redoc_url=None)
    page = resources.files("embodied.labelling").joinpath("page.html").read_text()

    class Answer(BaseModel):
        query: int
        ranking: list[int] = Field(min_length=2, max_length=3)
        labeller: str = Field(min_length=1, max_length=100)

    class Undo(BaseModel):
        labeller: str = Field(min_length=1, max_length=100)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        config = session.config
        return (page.replace("{{LABELLER}}", html.escape(config.labeller)).replace("{{FPS}}", str(float(config.fps)))
                .replace("{{STORE}}", html.escape(str(config.dataset))))  # fmt: skip

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/api/next")
    def next_query(labeller: str) -> dict:
        return session.next_query(labeller)

    @app.get("/api/episode/{episode}.png")
    def strip(episode: int) -> Response:
        try:
            return Response(session.strip(episode), media_type="image/png",
                            headers={"Cache-Control": "max-age=3600"})  # fmt: skip
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None

    @app.post("/api/answer")
    def answer(body: Answer) -> dict:
        try:
            return session.answer(body.query, body.ranking, body.labeller)
        except AlreadyAnswered as error:
            raise HTTPException(409, str(error)) from None
        except ValueError as error:
            raise HTTPException(422, str(error)) from None

    @app.post("/api/undo")
    def undo(body: Undo) -> dict:
        return session.undo(body.labeller)

    return app


def serve(session: LabellingSession) -> None:
    """Runs the server until interrupted (uvicorn), then releases the store."""
    import uvicorn

    config = session.config
    try:
        uvicorn.run(make_app(session), host=config.host, port=config.port, log_level="warning")
    finally:
        session.close()
