"""The entry point of `streamlit run app.py`: the server (with the API) and the page navigation.

The pages live in pages/ and only draw; the model lives in llm/ and is shared by every session."""

import streamlit as st

if __name__ != "__main__":
    # `streamlit run app.py` imports this file once, as the module `app`, to find the server it runs: Streamlit's
    # own routes plus the OpenAI-compatible API (server/api), with our middleware (the host guard) in front.
    # Each browser session then runs this file as __main__: the navigation below, then the page it names.
    import server
    from server.api.routes import api_routes, lifespan

    app = st.App(__file__, middleware=server.middleware(), routes=api_routes(), lifespan=lifespan)
else:
    from ui.auth import passed_gate, require_password
    from ui.i18n import _, language_switch
    from ui.keys import gestures

    st.set_page_config(page_title="Llama Studio", page_icon="🦙")
    language_switch()  # first: everything below (the page names too) is drawn in the language chosen
    # URL paths are the file names less their number (/, /Personas, /Search_answers, /Team, /API), as before the
    # navigation existed, so saved links (`?c=<id>`) keep working.
    pages = [
        st.Page("pages/0_Chat.py", title=_("Chat"), icon="🦙", default=True),
        st.Page("pages/1_Personas.py", title=_("Personas"), icon="🎭"),
        st.Page("pages/2_Search_answers.py", title=_("Search answers"), icon="🔎"),
        st.Page("pages/3_Team.py", title=_("Team"), icon="👥"),
        st.Page("pages/4_API.py", title=_("API"), icon="🔌"),
    ]
    # The navigation resolves the page the URL asks for (a deep link keeps it through the password), but shows
    # no list of pages until the password is given.
    page = st.navigation(pages, position="sidebar" if passed_gate() else "hidden")
    with st.sidebar:
        gestures(page.url_path)  # Esc, the focus, the phone's sidebar: on every page, once each time it is shown
    require_password()  # before the page: nothing of it runs without the password
    page.run()
